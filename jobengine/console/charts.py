"""Charts as inline SVG, drawn on the server: no script, no library, nothing fetched, and a
page that a screenshot, a text browser or a printout shows as it is.

Every value is escaped; numbers are laid out here, colours come from the stylesheet's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from jobengine.console.views import Latency, Series

WIDTH = 600
HEIGHT = 120


def throughput_chart(series: Series) -> Markup:
    """Completed (below) and failed (stacked above) jobs per bucket, one bar per bucket."""
    totals = [c + f for c, f in zip(series.completed, series.failed, strict=True)]
    top = max(totals, default=0) or 1
    slot = WIDTH / max(len(totals), 1)
    bars = []
    for i, (done, failed) in enumerate(zip(series.completed, series.failed, strict=True)):
        x = i * slot + 1
        h_done = HEIGHT * done / top
        h_failed = HEIGHT * failed / top
        bars.append(
            f'<rect class="bar-completed" x="{x:.1f}" y="{HEIGHT - h_done:.1f}" '
            f'width="{slot - 2:.1f}" height="{h_done:.1f}"><title>{done} completed</title></rect>'
        )
        if failed:
            bars.append(
                f'<rect class="bar-failed" x="{x:.1f}" y="{HEIGHT - h_done - h_failed:.1f}" '
                f'width="{slot - 2:.1f}" height="{h_failed:.1f}">'
                f"<title>{failed} failed</title></rect>"
            )
    label = escape(f"{series.type}: {sum(series.completed)} completed, {sum(series.failed)} failed")
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 14}" role="img" aria-label="{label}">'
        f'<text class="axis" x="0" y="{HEIGHT + 12}">peak {top} per bucket</text>'
        f"{''.join(bars)}</svg>"
    )


def latency_chart(latency: Latency) -> Markup:
    """p50, p90 and p99 of submit → start and of run time, as bars on one log-free scale."""
    values = [*latency.wait_seconds, *latency.run_seconds]
    top = max(values, default=0) or 1
    rows = []
    names = ("p50", "p90", "p99")
    for r, (title, triple) in enumerate(
        (("submit → start", latency.wait_seconds), ("run time", latency.run_seconds))
    ):
        for i, (name, value) in enumerate(zip(names, triple, strict=True)):
            y = (r * 3 + i) * 18
            w = (WIDTH - 260) * value / top
            rows.append(
                f'<text class="axis" x="0" y="{y + 13}">{escape(title)} {name}</text>'
                f'<rect class="bar-{"wait" if r == 0 else "run"}" x="150" y="{y + 2}" '
                f'width="{w:.1f}" height="14"></rect>'
                f'<text class="axis" x="{155 + w:.1f}" y="{y + 13}">{_seconds(value)}</text>'
            )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {6 * 18}" role="img" '
        f'aria-label="{escape(latency.type)} latency">{"".join(rows)}</svg>'
    )


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    key: str
    type: str
    status: str


NODE_W = 150
NODE_H = 38
GAP_X = 50
GAP_Y = 14


def layers(nodes: Sequence[Node], edges: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Each node's column: the length of the longest path from a root to it."""
    parents: dict[int, list[int]] = {n.id: [] for n in nodes}
    for parent, child in edges:
        parents.setdefault(child, []).append(parent)
    depth: dict[int, int] = {}

    def of(node: int, seen: frozenset[int]) -> int:
        if node in depth:
            return depth[node]
        if node in seen:  # a run's graph is acyclic; never loop on a bad row
            return 0
        up = [of(p, seen | {node}) + 1 for p in parents.get(node, [])]
        depth[node] = max(up, default=0)
        return depth[node]

    for n in nodes:
        of(n.id, frozenset())
    return depth


def dag_chart(nodes: Sequence[Node], edges: Sequence[tuple[int, int]]) -> Markup:
    """The run's graph, left to right; each node links to its job and shows its state."""
    column = layers(nodes, edges)
    rows: dict[int, int] = {}
    place: dict[int, tuple[float, float]] = {}
    for n in sorted(nodes, key=lambda n: (column[n.id], n.id)):
        c = column[n.id]
        r = rows.get(c, 0)
        rows[c] = r + 1
        place[n.id] = (c * (NODE_W + GAP_X) + 4, r * (NODE_H + GAP_Y) + 4)
    width = (max(column.values(), default=0) + 1) * (NODE_W + GAP_X)
    height = max(rows.values(), default=1) * (NODE_H + GAP_Y) + 8
    lines = []
    for parent, child in edges:
        if parent in place and child in place:
            (x1, y1), (x2, y2) = place[parent], place[child]
            lines.append(
                f'<line class="edge" x1="{x1 + NODE_W:.0f}" y1="{y1 + NODE_H / 2:.0f}" '
                f'x2="{x2:.0f}" y2="{y2 + NODE_H / 2:.0f}"></line>'
            )
    boxes = []
    for n in nodes:
        x, y = place[n.id]
        boxes.append(
            f'<a href="/console/jobs/{n.id}" data-job-id="{n.id}">'
            f'<rect class="node status-{escape(n.status)}" x="{x:.0f}" y="{y:.0f}" '
            f'width="{NODE_W}" height="{NODE_H}" rx="5"></rect>'
            f'<text class="node-key" x="{x + 6:.0f}" y="{y + 15:.0f}">{escape(n.key[:22])}</text>'
            f'<text class="node-status" x="{x + 6:.0f}" y="{y + 31:.0f}">'
            f"{escape(n.type[:14])} · {escape(n.status)}</text></a>"
        )
    return Markup(
        f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="run graph">{"".join(lines)}{"".join(boxes)}</svg>'
    )
