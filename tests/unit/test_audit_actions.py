"""The audit's fixed parts: the action list as the README documents it, and the bound on how
many refusals one key can have filed."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobengine.audit import ACTIONS, action
from jobengine.audit.actions import UnknownAuditAction
from jobengine.audit.rest import RefusalBudget

README = Path(__file__).parents[2] / "README.md"


def _audit_section() -> str:
    text = README.read_text()
    return text[text.index("## Audit log") : text.index("<!-- audit log (issue 18): end -->")]


def test_the_readme_documents_every_audited_action() -> None:
    section = _audit_section()
    missing = [a.name for a in ACTIONS if f"`{a.name}`" not in section]
    assert missing == []


def test_an_action_outside_the_list_is_refused_naming_it() -> None:
    assert action("dlq.purge").object_kind == "dead_letter"
    with pytest.raises(UnknownAuditAction, match=r"'dlq\.burn'"):
        action("dlq.burn")


def test_one_key_has_at_most_its_budget_of_refusals_filed_a_minute() -> None:
    now = [120.0]
    budget = RefusalBudget(3, clock=lambda: now[0])
    assert [budget.allows("api:a (p)") for _ in range(4)] == [True, True, True, False]
    assert budget.allows("api:b (q)")  # another key has its own
    now[0] += 60
    assert budget.allows("api:a (p)")  # a new minute, a new budget
