"""The secrets ``make dev`` prints: its admin API key and Flower's login, one of each per dev
data folder, reused across runs.

Minting a key per run left every earlier one valid and piling up. The key is kept in the data
folder (mode 0600, beside the embedded servers' data, which holds its hash anyway); a run
reuses it while it still authenticates, and otherwise mints one and revokes every other key
``make dev`` made, so at most one dev admin key is ever valid. Flower gets ``--basic-auth``
with a generated password kept the same way: its API can revoke tasks, so even on a laptop it
does not answer whoever reaches the port.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from sqlalchemy import Engine

from jobengine.api.keys import ADMIN, ApiKeyStore
from jobengine.store.database import transaction

DEV_KEY_NAME = "make-dev-admin"
DEV_KEY_FILE = "dev-admin-key"
FLOWER_FILE = "flower-credentials"
FLOWER_USER = "dev"


def dev_admin_key(engine: Engine, data_dir: Path, tenant: str) -> str:
    """The dev admin key: the stored one if it still works, else a new one (old ones revoked)."""
    path = data_dir / DEV_KEY_FILE
    stored = path.read_text().strip() if path.exists() else ""
    with transaction(engine) as conn:
        keys = ApiKeyStore(conn)
        found = keys.authenticate(stored) if stored else None
        if found is not None and found.name == DEV_KEY_NAME and found.is_admin:
            return stored
        issued = keys.create(tenant, DEV_KEY_NAME, [ADMIN])
        for key in keys.list():
            stale = key.prefix != issued.key.prefix and key.revoked_at is None
            if key.name == DEV_KEY_NAME and stale:
                keys.revoke(key.prefix)
    _write_private(path, issued.plaintext)
    return issued.plaintext


def flower_credentials(data_dir: Path) -> str:
    """``user:password`` for Flower's ``--basic-auth``, generated once per data folder."""
    path = data_dir / FLOWER_FILE
    stored = path.read_text().strip() if path.exists() else ""
    if stored.startswith(f"{FLOWER_USER}:") and len(stored) > len(FLOWER_USER) + 1:
        return stored
    credentials = f"{FLOWER_USER}:{secrets.token_urlsafe(18)}"
    _write_private(path, credentials)
    return credentials


def _write_private(path: Path, text: str) -> None:
    """Readable by its owner only, and never half-written: a new file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    partial.replace(path)
