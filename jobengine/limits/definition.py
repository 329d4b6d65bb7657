"""What a rate limit is: a token bucket, and the rule that picks its jobs and their bucket.

A limit holds ``burst`` tokens and refills ``rate`` tokens per ``per``. Its ``scope`` picks the
bucket of a job: ``type``, one bucket for every job of ``job_type``; ``tenant``, one bucket per
tenant (for every type, or only ``job_type``'s); ``key``, one bucket per value found at
``key_path`` in the payloads of ``job_type`` (a job without that value shares the bucket of
the empty key). A job costs ``units`` tokens, or the positive integer at ``units_path`` in its
payload when the limit names one.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import RowMapping

from jobengine.domain.job import NewJob
from jobengine.limits.errors import RateLimitInvalid, RateLimitUnitsInvalid

SECONDS_PER = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_BURST = 1_000_000
MAX_PER_SECOND = 1_000_000.0
"""Postgres keeps time to the microsecond: a token cannot come faster than one a microsecond."""
MIN_PER_HOUR = 1 / (366 * 24)
"""At least one token a year, so that every slot is a time Postgres can hold."""
MISSING_KEY = ""
"""The bucket key of a job whose payload lacks the limit's key."""


class Scope(StrEnum):
    TYPE = "type"
    TENANT = "tenant"
    KEY = "key"


@dataclass(frozen=True, slots=True)
class RateLimit:
    name: str
    scope: Scope
    rate: float
    per: str
    burst: int
    job_type: str | None = None
    key_path: str | None = None
    units: int = 1
    units_path: str | None = None

    @property
    def seconds_per_token(self) -> float:
        return SECONDS_PER[self.per] / self.rate

    @property
    def tolerance_seconds(self) -> float:
        """How late an admission may be without the bucket's later ones overdrawing it: the
        time the burst beyond one job's units takes to refill."""
        return max(0, self.burst - self.units) * self.seconds_per_token

    def applies_to_type(self, job_type: str) -> bool:
        return self.job_type is None or self.job_type == job_type

    def key_of(self, new: NewJob) -> str:
        """The bucket ``new`` draws from, within this limit."""
        if self.scope is Scope.TENANT:
            return new.tenant_id
        if self.scope is Scope.TYPE or self.key_path is None:
            return ""
        found, value = lookup(new.payload, self.key_path)
        if not found or value is None:
            return MISSING_KEY
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

    def units_of(self, new: NewJob) -> int:
        """Tokens ``new`` costs; refused before anything is written when its payload is wrong."""
        if self.units_path is None:
            return self.units
        found, value = lookup(new.payload, self.units_path)
        if not found:
            return self.units
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RateLimitUnitsInvalid(
                f"rate limit {self.name!r} reads a job's units at {self.units_path!r}, "
                f"and this payload has {value!r} there",
                hint=f"Put a positive integer there, or leave it out to cost {self.units} unit(s).",
            )
        return int(value)


def limit_from_row(row: RowMapping) -> RateLimit:
    return RateLimit(
        name=row["name"],
        scope=Scope(row["scope"]),
        rate=float(row["rate"]),
        per=row["per"],
        burst=int(row["burst"]),
        job_type=row["job_type"],
        key_path=row["key_path"],
        units=int(row["units"]),
        units_path=row["units_path"],
    )


@functools.lru_cache(maxsize=256)
def path_parts(path: str) -> tuple[str, ...]:
    """A JSON Pointer (``/customer/id``) or a dotted path (``customer.id``, ``payload.id``);
    kept per path, since every submission of a keyed limit reads one."""
    if path.startswith("/"):
        return tuple(p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/"))
    parts = tuple(path.split("."))
    return parts[1:] if parts[0] == "payload" and len(parts) > 1 else parts


def lookup(payload: Any, path: str) -> tuple[bool, Any]:
    """(found, value) of ``path`` in ``payload``; list items are reached by their index."""
    value = payload
    for part in path_parts(path):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _check_path(what: str, path: str | None) -> None:
    if path is not None and (not path or any(not p for p in path_parts(path))):
        raise RateLimitInvalid(
            f"{what} {path!r} names an empty field",
            hint="Give a dotted path such as account_id or customer.id, or a JSON Pointer "
            "such as /customer/id.",
        )


def check(limit: RateLimit) -> RateLimit:
    """Refuse a definition that is no token bucket, naming the field and how to fix it."""
    if not NAME.match(limit.name):
        raise RateLimitInvalid(
            f"rate limit name {limit.name!r} is not allowed",
            hint="Use 1 to 128 letters, digits, '_', '.', ':' or '-', starting with a letter "
            "or digit.",
        )
    if limit.per not in SECONDS_PER:
        raise RateLimitInvalid(
            f"per {limit.per!r} is not a unit of time",
            hint="Use second, minute or hour.",
        )
    if not limit.rate > 0 or limit.rate != limit.rate or limit.rate == float("inf"):
        raise RateLimitInvalid(
            f"rate {limit.rate} is not a positive number of tokens per {limit.per}",
            hint="Give how many tokens the bucket refills per unit of time, e.g. 10.",
        )
    per_second = limit.rate / SECONDS_PER[limit.per]
    if not MIN_PER_HOUR / 3600 <= per_second <= MAX_PER_SECOND:
        raise RateLimitInvalid(
            f"rate {limit.rate:g} per {limit.per} is outside one token a year to "
            f"{MAX_PER_SECOND:,.0f} a second",
            hint="A faster limit never holds a job back: leave it out. A slower one: raise "
            "the rate or count it per hour.",
        )
    if not 1 <= limit.burst <= MAX_BURST:
        raise RateLimitInvalid(
            f"burst {limit.burst} is outside 1..{MAX_BURST}",
            hint="Give the bucket's capacity: how many tokens may be spent at once.",
        )
    if not 1 <= limit.units <= limit.burst:
        raise RateLimitInvalid(
            f"units {limit.units} is outside 1..burst ({limit.burst})",
            hint="A job costs at least one token and no more than the bucket holds.",
        )
    if limit.scope is Scope.KEY and not limit.key_path:
        raise RateLimitInvalid(
            f"rate limit {limit.name!r} is keyed but names no key path",
            hint="Give key_path, the payload field whose value picks the bucket, e.g. account_id.",
        )
    if limit.scope is not Scope.KEY and limit.key_path is not None:
        raise RateLimitInvalid(
            f"key_path is given for a limit of scope {limit.scope.value!r}",
            hint="Use scope key for a limit per payload value, or leave key_path out.",
        )
    if limit.scope is not Scope.TENANT and not limit.job_type:
        raise RateLimitInvalid(
            f"a limit of scope {limit.scope.value!r} names no job type",
            hint="Give job_type, the type whose jobs the limit admits.",
        )
    _check_path("key_path", limit.key_path)
    _check_path("units_path", limit.units_path)
    return limit


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        raise RateLimitInvalid(
            f"scope {value!r} is not a rate limit scope",
            hint="Use type (one bucket per job type), tenant (one per tenant) or key (one per "
            "payload value).",
        ) from None
