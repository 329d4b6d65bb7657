"""Who acts, through which surface, from where: what every entry says about its author."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Surface = Literal["rest", "cli", "console", "flower", "worker", "system"]


@dataclass(frozen=True, slots=True)
class Origin:
    actor: str
    """The house form: ``api:<key name> (<prefix>)``, ``cli:<user>@<host>``, ``worker:<name>``."""
    surface: Surface
    client_addr: str | None = None
    tenant: str | None = None
    """The actor's own tenant (a key's); None for the CLI and the engine, which act fleet-wide.
    A refusal is filed under it, never under the tenant of the object it named."""
