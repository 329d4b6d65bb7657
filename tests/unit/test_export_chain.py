"""The export's line form and chain, with no database: what an auditor re-implements."""

from __future__ import annotations

import hashlib
import io
import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobengine.audit.chain import GENESIS, Chain, canonical, manifest_record, utc
from jobengine.audit.verify import ExportBroken, verify_stream

HEADER = {"format": "jobengine.provenance/1", "selection": {}, "asOf": {}, "engineVersion": "t"}


def document(*records: dict[str, object], counts: dict[str, int] | None = None) -> bytes:
    chain = Chain()
    out = [chain.line("header", HEADER)]
    out += [chain.line("job", record) for record in records]
    manifest = manifest_record(HEADER, chain)
    if counts is not None:
        manifest["counts"] = counts
    out.append(chain.line("manifest", manifest))
    return b"".join(out)


def test_timestamps_are_utc_with_microseconds_and_z_whatever_their_zone() -> None:
    two_hours_east = timezone(timedelta(hours=2))
    assert utc(datetime(2026, 12, 1, 3, 4, 5, 6, tzinfo=two_hours_east)) == (
        "2026-12-01T01:04:05.000006Z"
    )
    assert utc(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"


def test_lines_sort_keys_at_every_depth_with_no_spaces_and_ascii_only() -> None:
    assert canonical({"b": {"z": 1, "a": "é"}, "a": [1.5, None]}) == (
        b'{"a":[1.5,null],"b":{"a":"\\u00e9","z":1}}'
    )


def test_each_line_carries_the_sha256_of_the_previous_lines_bytes() -> None:
    lines = document({"id": 1}, {"id": 2}).splitlines()
    assert b'"prev":"' + GENESIS.encode() + b'"' in lines[0]
    for before, line in itertools.pairwise(lines):
        assert hashlib.sha256(before).hexdigest().encode() in line


def test_a_record_cannot_set_the_chains_own_keys() -> None:
    with pytest.raises(ValueError, match="seq"):
        Chain().line("job", {"seq": 9})


def test_verify_accepts_an_intact_document_and_refuses_a_manifest_that_miscounts() -> None:
    assert verify_stream(io.BytesIO(document({"id": 1}))).counts["job"] == 1
    wrong = document({"id": 1}, counts={"header": 1, "job": 2})
    with pytest.raises(ExportBroken) as broken:
        verify_stream(io.BytesIO(wrong))
    assert broken.value.line == 3 and "counts" in broken.value.message
