"""The state diagram in docs/state_machine.md draws exactly the transition table."""

from __future__ import annotations

import re
from pathlib import Path

from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.domain.transitions import BIRTH_STATES, TRANSITIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "state_machine.md"
EDGE = re.compile(r"^\s*(\[\*\]|\w+)\s*-->\s*(\[\*\]|\w+)\s*(?::.*)?$")
START = "[*]"


def mermaid_block(markdown: str) -> list[str]:
    blocks: list[str] = re.findall(r"```mermaid\n(.*?)```", markdown, flags=re.DOTALL)
    assert len(blocks) == 1, f"expected one mermaid block, found {len(blocks)}"
    lines = blocks[0].splitlines()
    assert lines[0].strip() == "stateDiagram-v2"
    return lines[1:]


def diagram_edges() -> list[tuple[str, str]]:
    edges = []
    for line in mermaid_block(DOC.read_text()):
        if not line.strip() or line.strip().startswith("%%"):
            continue
        match = EDGE.match(line)
        assert match, f"unparsed line in the state diagram: {line!r}"
        edges.append((match.group(1), match.group(2)))
    return edges


def test_diagram_edges_between_states_equal_the_transition_table() -> None:
    drawn = [(a, b) for a, b in diagram_edges() if START not in (a, b)]
    table = {(t.source.value, t.target.value) for t in TRANSITIONS}
    assert len(drawn) == len(set(drawn)), "an edge is drawn twice"
    assert set(drawn) == table


def test_diagram_starts_at_the_birth_states_and_ends_at_the_final_ones() -> None:
    edges = diagram_edges()
    assert {b for a, b in edges if a == START} == {s.value for s in BIRTH_STATES}
    assert {a for a, b in edges if b == START} == {s.value for s in FINAL_STATES}


def test_diagram_names_only_real_states() -> None:
    names = {n for edge in diagram_edges() for n in edge} - {START}
    assert names == {s.value for s in JobStatus}


def test_state_table_in_the_doc_lists_every_state_once() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", DOC.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(s.value for s in JobStatus)
