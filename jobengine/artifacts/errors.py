"""What attaching, reading or storing an artifact can refuse, each saying how to fix it."""

from __future__ import annotations

from jobengine.errors import JobEngineError, StoreError, ValidationError


class ArtifactInvalid(ValidationError):
    """A name or content type the engine will not keep (it would break a URL or a header)."""

    code = "ARTIFACT_INVALID"


class ArtifactTooLarge(ValidationError):
    code = "ARTIFACT_TOO_LARGE"

    def __init__(self, name: str, max_bytes: int) -> None:
        super().__init__(
            f"artifact {name!r} is over the limit of {max_bytes} bytes; nothing of it was kept",
            hint="Split it into several artifacts, compress it, or raise "
            "JOBENGINE_ARTIFACT_MAX_BYTES on the workers.",
        )
        self.max_bytes = max_bytes


class ArtifactNotFound(StoreError):
    code = "ARTIFACT_NOT_FOUND"

    def __init__(self, job_id: int, name: str) -> None:
        super().__init__(
            f"job {job_id} has no artifact named {name!r}",
            hint=f"List the job's artifacts with `jobengine jobs artifacts {job_id}`.",
        )


class ArtifactBytesMissing(StoreError):
    """The row exists but its storage has no bytes under its key (deleted by hand, or the
    storage URL changed since it was attached)."""

    code = "ARTIFACT_BYTES_MISSING"
    hint = (
        "Check that JOBENGINE_ARTIFACTS_URL names the same storage as when the artifact was "
        "attached, and that nothing deleted its bytes."
    )


class ArtifactBytesMismatch(StoreError):
    """The storage's bytes under a key are not the ones recorded when it was attached."""

    code = "ARTIFACT_BYTES_MISMATCH"
    hint = (
        "Something other than the engine changed the stored bytes; attach the artifact again "
        "from its source."
    )


class ArtifactStorageUnavailable(JobEngineError):
    code = "ARTIFACT_STORAGE_UNAVAILABLE"
    hint = "Check that the storage JOBENGINE_ARTIFACTS_URL names is reachable, then retry."
    retryable = True


class AttachRefused(StoreError):
    """The attaching attempt no longer holds its job: a stale attempt keeps nothing."""

    code = "STALE_LEASE"
    hint = "This attempt lost its lease (expired, cancelled, taken over); it must stop."

    def __init__(self, job_id: int, token: int, name: str) -> None:
        super().__init__(
            f"job {job_id}: lease token {token} no longer holds the job, so artifact {name!r} "
            "was not kept"
        )
        self.job_id = job_id
