"""The planner refuses every run that cannot be stored, naming the culprit, and counts each
job's parents; random DAGs are accepted, and any back edge makes them refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.runs.errors import (
    DuplicateRunKey,
    EmptyRun,
    InvalidRunKey,
    RunCycle,
    SelfEdge,
    UnknownRunKey,
    UnknownTriggerRule,
)
from jobengine.runs.planner import plan


def spec(keys: list[str], edges: list[tuple[str, str]]) -> RunSpec:
    return RunSpec(
        tenant_id="t",
        project_id="p",
        name="r",
        jobs=tuple(RunJobSpec(key=k, type="noop") for k in keys),
        edges=tuple(edges),
    )


def test_a_diamond_is_planned_with_each_jobs_parent_count() -> None:
    planned = plan(spec(["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]))
    assert planned.keys == ("a", "b", "c", "d")
    assert planned.parents == (0, 1, 1, 2)
    assert planned.edges == ((0, 1), (0, 2), (1, 3), (2, 3))


def test_an_edge_given_twice_counts_once() -> None:
    planned = plan(spec(["a", "b"], [("a", "b"), ("a", "b")]))
    assert planned.parents == (0, 1) and planned.edges == ((0, 1),)


def test_an_empty_run_is_refused_naming_the_run() -> None:
    with pytest.raises(EmptyRun, match="'r' has no jobs"):
        plan(spec([], []))


def test_a_duplicate_key_is_refused_naming_the_key() -> None:
    with pytest.raises(DuplicateRunKey) as refused:
        plan(spec(["a", "b", "a"], []))
    assert refused.value.key == "a" and refused.value.code == "DUPLICATE_RUN_KEY"


@pytest.mark.parametrize("key", ["", "   ", "k" * 201])
def test_a_blank_or_overlong_key_is_refused(key: str) -> None:
    with pytest.raises(InvalidRunKey) as refused:
        plan(spec([key], []))
    assert refused.value.code == "INVALID_RUN_KEY"


def test_an_unknown_trigger_rule_is_refused_listing_the_rules() -> None:
    bad = RunSpec(
        tenant_id="t",
        project_id="p",
        name="r",
        jobs=(RunJobSpec(key="a", type="noop", trigger_rule="sometimes"),),  # type: ignore[arg-type]
    )
    with pytest.raises(UnknownTriggerRule) as refused:
        plan(bad)
    assert "'sometimes'" in refused.value.message
    assert "all_success, all_done, on_failure" in refused.value.hint


def test_a_trigger_rule_given_as_its_name_is_accepted() -> None:
    named = RunSpec(
        tenant_id="t",
        project_id="p",
        name="r",
        jobs=(RunJobSpec(key="a", type="noop", trigger_rule="all_done"),),  # type: ignore[arg-type]
    )
    assert plan(named).keys == ("a",)


def test_an_edge_to_a_key_outside_the_run_is_refused_naming_the_edge_and_the_key() -> None:
    with pytest.raises(UnknownRunKey) as refused:
        plan(spec(["a"], [("a", "ghost")]))
    assert refused.value.edge == ("a", "ghost") and refused.value.key == "ghost"
    assert "'a' -> 'ghost'" in refused.value.message


def test_a_self_edge_is_refused_naming_the_job() -> None:
    with pytest.raises(SelfEdge, match="'a' -> 'a'"):
        plan(spec(["a"], [("a", "a")]))


def test_a_cycle_is_refused_naming_its_keys_in_order_from_the_first_job() -> None:
    with pytest.raises(RunCycle) as refused:
        plan(spec(["x", "a", "b", "c"], [("x", "a"), ("b", "c"), ("c", "a"), ("a", "b")]))
    assert refused.value.cycle == ("a", "b", "c")
    assert "a -> b -> c -> a" in refused.value.message
    assert refused.value.hint


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[int, int]]]:
    """A random DAG: edges only from a lower position to a higher one."""
    n = draw(st.integers(min_value=1, max_value=25))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    return [f"k{i}" for i in range(n)], edges


@given(dags(), st.randoms(use_true_random=False))
def test_any_dag_is_accepted_in_any_order_with_its_parents_counted(
    dag: tuple[list[str], list[tuple[int, int]]], rng: random.Random
) -> None:
    keys, edges = dag
    order = list(range(len(keys)))
    rng.shuffle(order)
    named = [(keys[p], keys[c]) for p, c in edges]
    planned = plan(spec([keys[i] for i in order], named))
    counts = dict(zip(planned.keys, planned.parents, strict=True))
    for n, key in enumerate(keys):
        assert counts[key] == sum(1 for _, c in edges if c == n)


@given(dags(), st.data())
def test_a_dag_with_one_back_edge_is_refused_naming_a_real_cycle(
    dag: tuple[list[str], list[tuple[int, int]]], data: st.DataObject
) -> None:
    keys, edges = dag
    assume(edges)
    start, end = data.draw(st.sampled_from(edges))
    named = [(keys[p], keys[c]) for p, c in edges] + [(keys[end], keys[start])]
    with pytest.raises(RunCycle) as refused:
        plan(spec(keys, named))
    cycle = refused.value.cycle
    ring = set(zip(cycle, cycle[1:] + cycle[:1], strict=True))
    assert ring <= set(named), "every hop of the named cycle is an edge of the run"
    assert len(set(cycle)) == len(cycle) >= 2
