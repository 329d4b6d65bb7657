"""One settings object for every process of the engine.

Everything is read from ``JOBENGINE_*`` environment variables (or a ``.env`` file) once, so
the API, the workers, the reaper and the CLI can never disagree about a lease TTL.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Engine settings. Unset URLs mean "start the embedded server under ``data_dir``"."""

    model_config = SettingsConfigDict(
        env_prefix="JOBENGINE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of Postgres, e.g. postgresql+psycopg://user:pw@host/db. "
        "Unset: a private Postgres is started under data_dir.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Redis URL for Celery. Unset: a private Redis is started under data_dir. "
        "Behind Redis Sentinel: sentinel://h1:26379;sentinel://h2:26379 (each sentinel, ';' "
        "between them) with JOBENGINE_BROKER_SENTINEL_MASTER.",
    )
    broker_sentinel_master: str | None = Field(
        default=None,
        description="The name the sentinels monitor the broker's master under (their "
        "`sentinel monitor <name> ...`); needed with, and only with, a sentinel:// broker URL.",
    )
    db_pooler: Literal["none", "transaction"] = Field(
        default="none",
        description="What sits between the engine and Postgres: none (a direct connection or a "
        "session pool), or transaction (PgBouncer's pool_mode = transaction), which turns off "
        "what a server connection lent for one transaction cannot carry: prepared statements "
        "and per-connection settings (deploy/RUNBOOK.md: PgBouncer).",
    )
    data_dir: Path = Field(
        default=Path(".jobengine"),
        description="Where embedded Postgres and Redis keep their data (git-ignored).",
    )
    lease_ttl_seconds: float = Field(default=30.0, gt=0, description="How long a claim lives.")
    heartbeat_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often a running job extends its lease."
    )
    completion_flush_seconds: float = Field(
        default=0.005,
        gt=0,
        le=1.0,
        description="How long a worker process lets a completion wait to be written with "
        "others in one statement; a crash in that window runs the job again after its lease.",
    )
    completion_batch: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Completions a worker process writes in one statement at most; 1 writes "
        "each at once.",
    )
    reaper_interval_seconds: float = Field(default=5.0, gt=0)
    leader_ttl_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long the maintenance leader's lease lives without a renewal; a frozen "
        "or cut-off leader is replaced after at most this plus one reaper interval.",
    )
    fleet_workers: int = Field(
        default=1, ge=0, description="Worker main processes (Celery nodes) the fleet runs."
    )
    fleet_worker_concurrency: int = Field(
        default=2, ge=0, description="Pool processes per worker (its -c), for the budget."
    )
    fleet_api_processes: int = Field(default=1, ge=0, description="API processes the fleet runs.")
    fleet_reapers: int = Field(default=2, ge=0, description="Reaper processes the fleet runs.")
    # ---- scale guards: the connection budget of one host, admission, load shedding ----
    db_connections_per_host: int | None = Field(
        default=None,
        ge=1,
        description="Postgres connections all jobengine processes of this host may hold "
        "together (the host_* settings say which run here). Each API process sizes its pool "
        "from what the workers and reapers leave; a process whose host would exceed it exits "
        "at start naming the numbers. Unset: no per-host budget (API pool 10 + overflow 20).",
    )
    host_workers: int = Field(
        default=1, ge=0, description="Worker main processes (Celery nodes) on this host."
    )
    host_api_processes: int = Field(default=1, ge=0, description="API processes on this host.")
    host_reapers: int = Field(default=1, ge=0, description="Reaper processes on this host.")
    claim_admission: bool = Field(
        default=True,
        description="Whether each worker process paces its claims while Postgres is "
        "saturated (jobengine.admission); off, claims are never delayed.",
    )
    claim_admission_slow_seconds: float = Field(
        default=0.25,
        gt=0,
        description="A claim slower than this (two in a row) counts as Postgres saturated "
        "and halves the process's claim rate; healthy claims take a few ms.",
    )
    api_max_in_flight: int = Field(
        default=64,
        ge=1,
        description="Requests touching Postgres one API process serves at once; the next is "
        "answered 503 OVERLOADED with Retry-After at once (probes, metrics, event streams "
        "exempt).",
    )
    api_pool_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long an API request waits for a pooled connection before it is "
        "answered 503 OVERLOADED; keep it below your clients' timeouts.",
    )
    # ---- end scale guards ----
    sealed: bool = Field(default=False, description="Air-gap mode: no egress but DB and broker.")
    command_types_enabled: bool = Field(
        default=False,
        description="Whether job types that run commands on the workers (runs_commands, e.g. "
        "shell) are accepted and run here at all; keys also need the jobs:command scope.",
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, gt=0, description="Largest accepted job payload, as compact JSON."
    )
    result_max_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest handler result kept on a job, as compact JSON; a larger one fails "
        "the attempt for good (RESULT_TOO_LARGE): attach big outputs as artifacts instead.",
    )
    artifacts_url: str | None = Field(
        default=None,
        description="Where artifacts' bytes live: file:///path or "
        "s3://bucket/prefix?endpoint_url=http://host:9000&region=us-east-1 (credentials from "
        "boto3's usual sources). Unset: the folder artifacts/ under data_dir.",
    )
    artifact_max_bytes: int = Field(
        default=100 * 1024 * 1024,
        gt=0,
        description="Largest artifact a handler may attach; a larger one is refused while it "
        "streams, and nothing of it is kept.",
    )
    redispatch_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A scheduled job published this long ago and still unclaimed is "
        "published again (its message seems lost). Duplicates are harmless: the claim decides.",
    )
    dispatch_grace_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a producer has to publish after commit before the leader does.",
    )
    eta_limit_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Longest retry countdown sent to Redis as an ETA message; longer waits stay "
        "in Postgres and are published when due. Must stay below the visibility timeout.",
    )
    broker_visibility_timeout_seconds: float = Field(default=3600.0, gt=0)
    dispatch_chunk_size: int = Field(
        default=20,
        ge=1,
        description="When a backlog is published (a batch submission, the leader catching up), "
        "one message carries up to this many jobs of one type and queue; 1 turns chunks off.",
    )
    worker_prefetch_multiplier: int = Field(default=1, ge=1)
    task_events: bool = Field(
        default=False,
        description="Workers send Celery task events, which only Flower reads (Postgres already "
        "records every transition). Off by default: on bare Celery they cost about 40% of the "
        "rate. `make dev` turns them on for its Flower; `celery worker -E` does the same.",
    )
    shutdown_grace_seconds: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM a worker takes no more messages and lets running jobs finish "
        "for this long; then it stops the handlers still running and hands their jobs back "
        "(to scheduled, attempt returned) for another worker. Keep the orchestrator's grace "
        "period (terminationGracePeriodSeconds, stop_grace_period) a few seconds above it.",
    )
    worker_heartbeat_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a worker's main process refreshes its row in the workers registry.",
    )
    worker_alive_file: str | None = Field(
        default=None,
        description="A file each worker's event loop touches every "
        "JOBENGINE_WORKER_HEARTBEAT_SECONDS (and removes at shutdown), for a liveness probe "
        "that asks neither Postgres nor Redis: `jobengine health worker --file ...`.",
    )
    worker_ttl_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A worker whose row has not been refreshed for this long is shown as gone "
        "and counts as handling nothing.",
    )
    worker_prune_after_seconds: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="A gone worker's row is deleted once it has not been seen for this long.",
    )
    handler_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra modules whose @job handlers workers import: comma-separated "
        "(myapp.jobs,other.jobs) or a JSON list.",
    )
    api_host: str = Field(default="127.0.0.1", description="Where `jobengine api` listens.")
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        description="Larger request bodies are refused (413) before they are read whole.",
    )
    stream_poll_seconds: float = Field(
        default=0.2, gt=0, description="How often an idle event stream looks for new events."
    )
    stream_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="An idle event stream sends a comment this often."
    )
    log_level: str = Field(default="INFO")
    log_json: bool = Field(default=False, description="JSON log lines instead of console ones.")
    prune_after_seconds: float | None = Field(
        default=None,
        gt=0,
        description="The leader deletes final jobs (with their history and events), counted "
        "outbox events and dealt-with dead letters older than this. Unset: it never prunes; "
        "`jobengine db prune` does the same by hand.",
    )
    prune_interval_seconds: float = Field(
        default=600.0, gt=0, description="How often the leader prunes, when it prunes at all."
    )
    prune_batch_size: int = Field(
        default=5000,
        ge=1,
        description="Rows per prune batch; each batch is its own short transaction.",
    )
    # --- audit log (jobengine.audit) ---
    audit_retention_days: float | None = Field(
        default=None,
        gt=0,
        description="The leader deletes audit entries older than this many days, at the prune "
        "interval. Unset (the default): entries are kept forever, as evidence is.",
    )

    @field_validator("handler_modules", mode="before")
    @classmethod
    def _module_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        return [name.strip() for name in value.split(",") if name.strip()]

    @field_validator("artifacts_url")
    @classmethod
    def _artifacts_storage(cls, value: str | None) -> str | None:
        """Checked here, so a process refuses a bad URL at start, not at its first artifact."""
        if value is None:
            return value
        parts = urlsplit(value)
        local = parts.scheme == "file" and parts.netloc in ("", "localhost")
        if (local and parts.path.startswith("/")) or (parts.scheme == "s3" and parts.netloc):
            return value
        raise ValueError(
            "JOBENGINE_ARTIFACTS_URL must be file:///absolute/path (a local folder, three "
            "slashes) or s3://bucket/prefix (an S3-compatible store, optionally "
            "?endpoint_url=http://host:9000&region=...)"
        )

    @model_validator(mode="after")
    def _sentinel_named(self) -> Settings:
        sentinel = (self.broker_url or "").startswith("sentinel://")
        if sentinel and not self.broker_sentinel_master:
            raise ValueError(
                "JOBENGINE_BROKER_URL names sentinels (sentinel://...): set "
                "JOBENGINE_BROKER_SENTINEL_MASTER to the master's name they monitor"
            )
        if self.broker_sentinel_master and not sentinel:
            raise ValueError(
                "JOBENGINE_BROKER_SENTINEL_MASTER is set but JOBENGINE_BROKER_URL names no "
                "sentinel: write it as sentinel://h1:26379;sentinel://h2:26379, or unset the master"
            )
        return self

    @model_validator(mode="after")
    def _eta_fits_visibility(self) -> Settings:
        if self.eta_limit_seconds >= self.broker_visibility_timeout_seconds:
            raise ValueError(
                "JOBENGINE_ETA_LIMIT_SECONDS must be below "
                "JOBENGINE_BROKER_VISIBILITY_TIMEOUT_SECONDS, or Redis redelivers waiting retries"
            )
        if self.heartbeat_interval_seconds >= self.lease_ttl_seconds:
            raise ValueError(
                "JOBENGINE_HEARTBEAT_INTERVAL_SECONDS must be below JOBENGINE_LEASE_TTL_SECONDS, "
                "or healthy jobs lose their leases"
            )
        if self.worker_heartbeat_seconds >= self.worker_ttl_seconds:
            raise ValueError(
                "JOBENGINE_WORKER_HEARTBEAT_SECONDS must be below JOBENGINE_WORKER_TTL_SECONDS, "
                "or live workers are shown as gone"
            )
        if self.worker_prune_after_seconds <= self.worker_ttl_seconds:
            raise ValueError(
                "JOBENGINE_WORKER_PRUNE_AFTER_SECONDS must be above JOBENGINE_WORKER_TTL_SECONDS, "
                "or rows are deleted before their workers are shown as gone"
            )
        if self.leader_ttl_seconds <= self.reaper_interval_seconds:
            raise ValueError(
                "JOBENGINE_LEADER_TTL_SECONDS must be above JOBENGINE_REAPER_INTERVAL_SECONDS, "
                "or the leader loses its lease between two renewals"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
