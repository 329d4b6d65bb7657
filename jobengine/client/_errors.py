"""The client's errors: one root, the server's envelope kept whole, transport failures apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ClientError(Exception):
    """Root of every error the client raises."""


class ApiError(ClientError):
    """The server answered with an error envelope ``{code, message, hint, retryable}``.

    Raised once the client's own retries (for ``retryable`` errors) are used up, or at once for
    the others; ``code`` is the engine's stable error code (``IDEMPOTENCY_CONFLICT``, ...).
    """

    def __init__(
        self, *, status: int, code: str, message: str, hint: str = "", retryable: bool = False
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({hint})" if hint else ""))
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.retryable = retryable

    @classmethod
    def from_response(cls, status: int, body: Any, text: str) -> ApiError:
        """Build from the envelope; a body that is not one (a proxy's page) keeps its text."""
        if isinstance(body, Mapping) and isinstance(body.get("code"), str):
            named = QuotaExceeded if body["code"] == QuotaExceeded.CODE else cls
            return named(
                status=status,
                code=body["code"],
                message=str(body.get("message", "")),
                hint=str(body.get("hint") or ""),
                retryable=bool(body.get("retryable", False)),
            )
        return cls(status=status, code=f"HTTP_{status}", message=text[:500] or "no body")


class QuotaExceeded(ApiError):
    """429 ``QUOTA_EXCEEDED``: the tenant's quota of queued jobs is full and nothing was
    written. Retryable: the client has already waited the server's ``Retry-After`` between
    its own tries; try again later, or submit fewer jobs at once."""

    CODE = "QUOTA_EXCEEDED"


class TransportError(ClientError):
    """The server could not be reached, or the connection broke, on every attempt allowed.

    The original ``httpx`` error is the ``__cause__``. A request that is not safe to repeat
    (a POST without an idempotency key) is tried once, so whether it took effect is unknown.
    """


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` ran out of time before the job reached a final state."""

    def __init__(self, job_id: int, timeout: float) -> None:
        super().__init__(f"job {job_id} did not reach a final state within {timeout}s")
        self.job_id = job_id
        self.timeout = timeout


class DownloadCorrupt(ClientError):
    """A downloaded artifact's bytes do not match the size or sha256 the server recorded;
    nothing was left at the destination path."""

    def __init__(self, job_id: int, name: str, problem: str) -> None:
        super().__init__(f"artifact {name!r} of job {job_id}: {problem}; download it again")
        self.job_id = job_id
        self.name = name
