"""The PNG chart: ours over each other contender, per case (matplotlib, from the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks._harness import CaseResult

__all__ = ["chart_rows", "write_chart"]


def chart_rows(results: Sequence[CaseResult]) -> list[tuple[str, float, str]]:
    """(label, ratio, role of the other) for the case's main contender of ours against each other one."""
    rows: list[tuple[str, float, str]] = []
    for r in results:
        main = next((c.name for c in r.contenders if c.role == "ours" and not c.skipped), None)
        roles = {c.name: c.role for c in r.contenders}
        for x in r.ratios():
            if x.value is not None and x.ours == main:
                rows.append((f"{r.case}: vs {x.other}", x.value, roles.get(x.other, "baseline")))
    return rows


def write_chart(results: Sequence[CaseResult], path: Path, subtitle: str) -> str | None:
    """Write the chart; returns why it was not written (matplotlib missing, nothing to plot), else None."""
    rows = chart_rows(results)
    if not rows:
        return "no ratios to plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]')"
    labels = [label for label, _, _ in rows][::-1]
    values = [v for _, v, _ in rows][::-1]
    # Against a limit (a C client, wrk) below 1x is expected: grey, not red.
    # Within 3 % is a tie (a fixed-rate fleet where both keep up): blue, neither green nor red.
    colors = [
        "#9a9a9a" if role == "limit"
        else "#4a7fb5" if 0.97 <= v <= 1.03
        else "#2a9d5c" if v > 1 else "#d1495b"
        for _, v, role in rows
    ][::-1]
    fig, ax = plt.subplots(figsize=(11, 0.3 * len(rows) + 1.8))
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(min(min(values), 1.0) / 1.5, max(max(values), 1.0) * 2.5)  # room for the labels
    ax.axvline(1.0, color="black", linewidth=0.8)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("losant_async / other (median of paired runs; > 1 means ours is ahead; grey: a C limit; blue: a tie)")
    ax.set_title(f"losant_async benchmarks\n{subtitle}", fontsize=8, wrap=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
