"""API keys: issued once, stored only as a hash, bound to one tenant and a set of scopes.

A key is ``je_<prefix>_<secret>``. The prefix is public (listings show it, ``keys revoke`` takes
it); the secret is 32 random bytes from ``secrets``. Only sha256 of the whole key is stored.
A slow password hash (bcrypt, argon2) exists to make guessing low-entropy passwords expensive;
a 256-bit random secret cannot be guessed however fast the hash, so sha256 costs nothing in
safety and lets a request find its key by an indexed lookup of the hash, with no per-request
key stretching and no secret compared in Python.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from jobengine.audit import Origin, record
from jobengine.errors import JobEngineError, ValidationError
from jobengine.store import queries
from jobengine.store.database import run_all, run_statement

KEY_PREFIX = "je"
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 8
SECRET_BYTES = 32

JOBS_READ = "jobs:read"
JOBS_WRITE = "jobs:write"
JOBS_COMMAND = "jobs:command"
"""Submitting job types that run commands on the workers (``runs_commands``), e.g. ``shell``."""
DLQ_REPLAY = "dlq:replay"
AUDIT_READ = "audit:read"
"""Reading the audit log's entries of the key's own tenant (admin keys read every entry)."""
ADMIN = "admin"
SCOPES: tuple[str, ...] = (JOBS_READ, JOBS_WRITE, JOBS_COMMAND, DLQ_REPLAY, AUDIT_READ, ADMIN)
"""Mirrors the ``ck_api_keys_known_scopes`` constraint of migration 0008."""


class UnknownScope(ValidationError):
    code = "UNKNOWN_SCOPE"
    hint = f"Use one or more of: {', '.join(SCOPES)}."


class KeyNotFound(JobEngineError):
    code = "KEY_NOT_FOUND"
    hint = "List keys and their prefixes with `jobengine keys list`."


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    tenant_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        """``admin`` implies every scope."""
        return ADMIN in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``plaintext`` is shown once and never stored."""

    key: ApiKey
    plaintext: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key_text() -> tuple[str, str]:
    """A fresh ``(plaintext, prefix)``."""
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}", prefix


def looks_like_key(plaintext: str) -> bool:
    """Whether ``plaintext`` has a key's shape: saves a database round trip for garbage."""
    parts = plaintext.split("_", 2)
    return (
        len(parts) == 3
        and parts[0] == KEY_PREFIX
        and len(parts[1]) == PREFIX_LENGTH
        and len(parts[2]) >= 32
        and len(plaintext) <= 200
    )


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(scopes))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise UnknownScope(f"unknown or missing scope(s): {', '.join(unknown) or 'none given'}")
    return chosen


def _key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=tuple(row["scopes"]),
        created_at=row.get("created_at"),
        revoked_at=row.get("revoked_at"),
        last_used_at=row.get("last_used_at"),
    )


class ApiKeyStore:
    """Keys in Postgres; runs inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def create(
        self, tenant_id: str, name: str, scopes: Iterable[str], *, origin: Origin | None = None
    ) -> IssuedKey:
        """``origin`` (here and in ``revoke``) files the act in the audit log, in this
        transaction: the key's prefix, name, tenant and scopes, never its secret."""
        if not tenant_id.strip() or not name.strip():
            raise ValidationError("tenant and name must be non-empty", hint="Name both.")
        chosen = check_scopes(scopes)
        plaintext, prefix = new_key_text()
        row = run_statement(
            self._conn,
            queries.API_KEY_CREATE,
            {
                "tenant_id": tenant_id,
                "name": name,
                "prefix": prefix,
                "secret_hash": hash_key(plaintext),
                "scopes": list(chosen),
            },
        )
        assert row is not None
        key = _key(row)
        if origin is not None:
            self._audit(origin, "key.create", key)
        return IssuedKey(key=key, plaintext=plaintext)

    def list(self) -> list[ApiKey]:
        return [_key(r) for r in run_all(self._conn, queries.API_KEY_LIST, {})]

    def revoke(self, prefix: str, *, origin: Origin | None = None) -> ApiKey:
        """Revoke the key with ``prefix``; revoking twice keeps the first revocation time."""
        row = run_statement(self._conn, queries.API_KEY_REVOKE, {"prefix": prefix})
        if row is None:
            raise KeyNotFound(f"no API key has the prefix {prefix!r}")
        key = _key(row)
        if origin is not None:
            self._audit(origin, "key.revoke", key)
        return key

    def _audit(self, origin: Origin, action: str, key: ApiKey) -> None:
        detail = {"name": key.name, "prefix": key.prefix, "scopes": list(key.scopes)}
        record(
            self._conn, origin, action, object_id=key.prefix, tenant=key.tenant_id, detail=detail
        )

    def authenticate(self, plaintext: str) -> ApiKey | None:
        """The live key ``plaintext`` is, or None (unknown, malformed or revoked)."""
        if not looks_like_key(plaintext):
            return None
        row = run_statement(
            self._conn, queries.API_KEY_AUTHENTICATE, {"secret_hash": hash_key(plaintext)}
        )
        return None if row is None else _key(row)
