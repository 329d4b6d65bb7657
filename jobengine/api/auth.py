"""Who is calling and what they may do: bearer keys, scopes, and the tenant a request acts for.

A job of another tenant is answered like a job that does not exist (404), never 403, so a key
cannot learn which ids other tenants hold. Tracebacks name the server's files and code, so only
admin keys (and the CLI, which reads the database itself) see them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobengine.api.errors import Forbidden, Unauthorized
from jobengine.api.keys import ApiKey, ApiKeyStore
from jobengine.api.state import ApiState, api_state
from jobengine.audit.rest import remember_key
from jobengine.domain.job import Job
from jobengine.errors import JobNotFound
from jobengine.store.database import transaction

bearer = HTTPBearer(auto_error=False, description="An API key: je_<prefix>_<secret>.")


def key_for(state: ApiState, token: str | None) -> ApiKey:
    """The live key ``token`` is, or ``Unauthorized`` saying why not."""
    if not token:
        raise Unauthorized("no API key was sent")
    with transaction(state.engine) as conn:
        key = ApiKeyStore(conn).authenticate(token)
    if key is None:
        raise Unauthorized("the API key is unknown or revoked")
    return key


def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    token = credentials.credentials if credentials is not None else None
    key = key_for(api_state(request), token)
    remember_key(request, key)  # the audit log names it, a refusal included
    return key


def require(scope: str) -> Callable[[ApiKey], ApiKey]:
    """A dependency that lets through keys holding ``scope`` (or ``admin``)."""

    def check(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
        check_scope(key, scope)
        return key

    return check


def check_scope(key: ApiKey, scope: str, needed_for: str | None = None) -> None:
    if not key.allows(scope):
        why = f" ({needed_for})" if needed_for else ""
        raise Forbidden(
            f"this key lacks the scope {scope!r}{why}",
            hint=f"Use a key created with --scope {scope}.",
        )


def sees_tracebacks(key: ApiKey) -> bool:
    return key.is_admin


def acting_tenant(key: ApiKey, requested: str | None) -> str:
    """The tenant a request acts for: the key's own, or another one only for admin keys."""
    if requested is None or requested == key.tenant_id:
        return key.tenant_id
    if key.is_admin:
        return requested
    raise Forbidden(
        f"this key belongs to another tenant than {requested!r}",
        hint="Send the X-Tenant-Id of the key's own tenant.",
    )


def visible(key: ApiKey, job: Job) -> Job:
    """``job`` if ``key`` may see it; otherwise the same error as for a missing job."""
    if job.tenant_id != key.tenant_id and not key.is_admin:
        raise JobNotFound(job.id)
    return job
