"""Database URLs that name several Postgres servers, written libpq's way.

Operators write a primary and its standbys the way libpq and psql read them, in the URL's
authority: ``postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write``. libpq then
tries the hosts in turn and keeps the first that is read-write, so after a failover the same
URL reaches the new primary. SQLAlchemy's URL parser reads one host only (the port becomes
``5432,h2:5433`` and fails), but its psycopg dialect passes ``?host=h1,h2&port=5432,5433``
to libpq unchanged; so every URL the engine takes is rewritten once into that form
(``normalize_url`` calls ``hosts_in_query``), and every place that names where the database
is reads the hosts back with ``hosts_of``. A malformed list is SQLAlchemy's ``ArgumentError``,
so it is refused where any unparseable URL is, with the same message shape.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote

from sqlalchemy.exc import ArgumentError

_URL = re.compile(r"^(?P<scheme>[^:/?#]+://)(?P<user>[^/?#]*@)?(?P<hosts>[^/?#@]*)(?P<tail>.*)$")
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<name>[^:]*))(?::(?P<port>\d*))?$")


def _split(token: str) -> tuple[str, str]:
    match = _HOST_PORT.match(token)
    if match is None or not (match["v6"] or match["name"]):
        raise ArgumentError(
            f"JOBENGINE_DATABASE_URL names a host {token!r} that is not host[:port]: write "
            "several hosts as h1:5432,h2:5432 (IPv6 in brackets, [::1]:5432)"
        )
    return match["v6"] or match["name"], match["port"] or ""


def hosts_in_query(url: str) -> str:
    """``url`` with a comma-separated host list moved from the authority into the query
    (``host=h1,h2&port=p1,p2``, libpq's own keywords); any other URL unchanged."""
    match = _URL.match(url)
    if match is None or "," not in match["hosts"]:
        return url
    tail = match["tail"]
    path, _, query = tail.partition("?")
    if any(key in ("host", "port") for key, _ in parse_qsl(query)):
        raise ArgumentError(
            "JOBENGINE_DATABASE_URL names hosts both before the database name and in ?host=: "
            "keep one of the two lists"
        )
    pairs = [_split(token) for token in match["hosts"].split(",")]
    listed = "host=" + quote(",".join(h for h, _ in pairs), safe=",:")
    ports = ",".join(p for _, p in pairs)
    if ports.strip(","):
        listed += "&port=" + ports
    query = f"{listed}&{query}" if query else listed
    return f"{match['scheme']}{match['user'] or ''}{path or '/'}?{query}"


def hosts_of(url: str, default_port: int = 5432) -> list[tuple[str, int]]:
    """Every (host, port) a database URL names, in libpq's order, in any of the three forms
    (authority list, ``?host=h1,h2&port=p1,p2``, SQLAlchemy's repeated ``?host=h1:p1``); a
    unix socket directory counts as a host. Empty when the URL names none (libpq's default)."""
    match = _URL.match(hosts_in_query(url))
    if match is None:
        return []
    query = parse_qsl(match["tail"].partition("?")[2])
    listed = [value for key, value in query if key == "host"]
    if not listed:
        if not match["hosts"]:
            return []
        host, port = _split(match["hosts"])
        return [(unquote(host), int(port or default_port))]
    if len(listed) > 1:  # SQLAlchemy's own form: each host=h:p
        return [(host, int(port or default_port)) for host, port in map(_split, listed)]
    names = [name for name in listed[0].split(",") if name]
    ports = next((value for key, value in query if key == "port"), "").split(",")
    if len(ports) == 1:
        ports = ports * len(names)
    return [(name, int(port or default_port)) for name, port in zip(names, ports, strict=False)]
