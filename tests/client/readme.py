"""The README's examples, read from the README itself, so they cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def examples(section: str) -> list[str]:
    """The Python blocks under the ``## <section>`` heading, in order."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    found = re.findall(r"```python\n(.*?)```", text[start : end if end != -1 else None], re.S)
    assert found, f"no Python example under {section!r}"
    return found


def example(section: str) -> str:
    """The first Python block under the ``## <section>`` heading."""
    return examples(section)[0]
