"""The URL forms of high availability, read the same everywhere: libpq's list of Postgres
hosts, and a broker reached through Redis Sentinel."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import ArgumentError

from config.celery import celery_config
from config.settings import Settings
from jobengine import sealed
from jobengine.redis_clients import broker_client, sentinels_of
from jobengine.services import ConfigurationError, check_database_url, masked_url
from jobengine.store.database import normalize_url
from jobengine.store.hosts import hosts_of
from jobengine.store.role_connections import with_role_parameters
from jobengine.store.startup import _where

LIBPQ = "postgresql://app:s%40cret@db-b:5433,db-a:5432/jobs?target_session_attrs=read-write"
SENTINELS = "sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26380/2"


def _libpq_arguments(url: str) -> dict[str, object]:
    """What SQLAlchemy's psycopg dialect hands to libpq for ``url``."""
    _, kwargs = PGDialect_psycopg().create_connect_args(make_url(normalize_url(url)))
    return dict(kwargs)


def test_a_libpq_list_of_hosts_reaches_libpq_as_its_own_host_and_port_lists_in_order() -> None:
    assert _libpq_arguments(LIBPQ) == {
        "host": "db-b,db-a",
        "port": "5433,5432",
        "dbname": "jobs",
        "user": "app",
        "password": "s@cret",
        "target_session_attrs": "read-write",
    }


def test_a_host_without_a_port_in_the_list_gets_libpq_s_default_port() -> None:
    args = _libpq_arguments("postgresql+psycopg://app@db-a,[fd00::2]:6432/jobs")
    assert (args["host"], args["port"]) == ("db-a,fd00::2", ",6432")
    assert hosts_of("postgresql+psycopg://app@db-a,[fd00::2]:6432/jobs") == [
        ("db-a", 5432),
        ("fd00::2", 6432),
    ]


def test_a_url_with_one_host_is_left_exactly_as_it_was() -> None:
    url = "postgresql+psycopg://app:pw@db-a:5432/jobs?sslmode=require"
    assert normalize_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        LIBPQ,
        "postgresql+psycopg://app@/jobs?host=db-b,db-a&port=5433,5432",
        "postgresql+psycopg://app@/jobs?host=db-b:5433&host=db-a:5432",
    ],
)
def test_every_way_of_writing_several_hosts_names_the_same_hosts(url: str) -> None:
    assert hosts_of(url) == [("db-b", 5433), ("db-a", 5432)]


def test_hosts_listed_twice_or_malformed_are_refused_as_a_bad_database_url() -> None:
    with pytest.raises(ArgumentError, match="keep one of the two lists"):
        normalize_url("postgresql+psycopg://app@db-a,db-b/jobs?host=db-c")
    with pytest.raises(ArgumentError, match=r"not host\[:port\]"):
        normalize_url("postgresql+psycopg://app@db-a:x,db-b/jobs")
    with pytest.raises(ConfigurationError, match="JOBENGINE_DATABASE_URL"):
        check_database_url("postgresql+psycopg://app@db-a,:5432/jobs")


def test_a_multi_host_url_is_accepted_shown_without_its_password_and_named_whole() -> None:
    assert check_database_url(LIBPQ) == LIBPQ
    assert masked_url(LIBPQ) == (
        "postgresql+psycopg://app:***@/jobs?host=db-b,db-a&port=5433,5432"
        "&target_session_attrs=read-write"
    )
    assert _where(LIBPQ) == "db-b:5433,db-a:5432/jobs"


def test_several_hosts_without_target_session_attrs_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="no target_session_attrs") as refused:
        check_database_url("postgresql+psycopg://app@db-a,db-b/jobs")
    assert "target_session_attrs=read-write" in refused.value.hint
    url = "postgresql+psycopg://app@pooler-a,pooler-b/jobs?target_session_attrs=any"
    assert check_database_url(url) == url


def test_a_role_s_parameters_keep_every_host_of_the_list() -> None:
    url = with_role_parameters(LIBPQ, "api")
    args = _libpq_arguments(url)
    assert (args["host"], args["port"]) == ("db-b,db-a", "5433,5432")
    assert args["application_name"] == "jobengine-api"
    assert args["target_session_attrs"] == "read-write"


def test_sealed_mode_lets_a_worker_reach_every_postgres_host_of_the_list() -> None:
    allowed = sealed.allowed_endpoints(LIBPQ, "redis://broker:6380/0")
    assert allowed == {("db-b", 5433), ("db-a", 5432), ("broker", 6380)}


def test_a_sentinel_broker_without_the_master_s_name_is_refused_naming_both_settings() -> None:
    with pytest.raises(ValidationError, match="JOBENGINE_BROKER_SENTINEL_MASTER"):
        Settings(broker_url=SENTINELS)
    with pytest.raises(ValidationError, match="names no sentinel"):
        Settings(broker_url="redis://broker:6379/0", broker_sentinel_master="mymaster")


def test_celery_asks_the_sentinels_for_the_master_by_its_name_and_only_then() -> None:
    settings = Settings(broker_url=SENTINELS, broker_sentinel_master="mymaster")
    options = celery_config(settings, SENTINELS)["broker_transport_options"]
    assert options["master_name"] == "mymaster"
    plain = celery_config(Settings(), "redis://broker:6379/0")["broker_transport_options"]
    assert "master_name" not in plain


def test_the_engine_s_own_redis_client_follows_the_master_the_sentinels_name() -> None:
    assert sentinels_of(SENTINELS) == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    client = broker_client(SENTINELS, sentinel_master="mymaster", timeout=1)
    pool = client.connection_pool
    assert getattr(pool, "service_name", None) == "mymaster"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == "pw"
    with pytest.raises(ValueError, match="master's name"):
        broker_client(SENTINELS, sentinel_master=None, timeout=1)
