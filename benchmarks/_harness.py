"""Pure parts of the benchmark harness: results, statistics, ratios, targets, table and JSON shape."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CaseResult",
    "Contender",
    "Ratio",
    "Spread",
    "Target",
    "TargetOutcome",
    "format_markdown",
    "format_rate",
    "format_table",
    "paired_ratio",
    "percentile",
    "results_document",
    "results_from_document",
    "spread",
]

Role = Literal["ours", "baseline", "limit"]
Status = Literal["met", "missed", "unknown"]


@dataclass(frozen=True)
class Spread:
    """Median and spread of one contender's runs."""

    median: float
    min: float
    max: float
    q1: float
    q3: float
    n: int


def spread(values: Sequence[float]) -> Spread | None:
    """Median, min/max and quartiles of ``values``; ``None`` when there is nothing to summarise."""
    xs = sorted(v for v in values if math.isfinite(v))
    if not xs:
        return None
    if len(xs) == 1:
        return Spread(xs[0], xs[0], xs[0], xs[0], xs[0], 1)
    # "inclusive" keeps the quartiles inside the observed range with 2 or 3 runs.
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Spread(statistics.median(xs), xs[0], xs[-1], q1, q3, len(xs))


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(xs)))
    return xs[min(rank, len(xs)) - 1]


def paired_ratio(ours: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Median of per-run ratios ours/baseline; runs are interleaved, so run i of each is paired.

    Pairing per run (rather than a ratio of medians) cancels the drift of a
    noisy shared machine: both figures of a pair were taken side by side.
    """
    pairs = [
        o / b
        for o, b in zip(ours, baseline, strict=False)
        if math.isfinite(o) and math.isfinite(b) and b > 0
    ]
    if not pairs:
        return None
    return statistics.median(pairs)


@dataclass
class Contender:
    """One implementation measured in a case: one value per run, or a reason it was skipped."""

    name: str
    role: Role
    unit: str
    values: list[float] = field(default_factory=list)
    higher_is_better: bool = True
    skipped: str | None = None
    # Secondary figures (latency percentiles, connect time, errors...) per run.
    extra: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_extra(self, key: str, value: float) -> None:
        self.extra.setdefault(key, []).append(value)

    @property
    def summary(self) -> Spread | None:
        return spread(self.values)


@dataclass(frozen=True)
class Ratio:
    """Ours over one other contender, median of paired runs (>1 means ours is better when higher is better)."""

    ours: str
    other: str
    value: float | None


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ours >= ``factor`` x the baseline (or an absolute bound when ``baseline`` is None)."""

    text: str
    ours: str
    baseline: str | None = None
    factor: float = 1.0
    metric: str | None = None  # an ``extra`` key instead of the main value
    at_most: bool = False  # absolute bound from above (e.g. KiB per device)
    # Also judged against these; the strongest measured one decides (one client, several ways to run it).
    or_best_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetOutcome:
    text: str
    status: Status
    figure: str


@dataclass
class CaseResult:
    """Everything one case measured, in one run of the suite."""

    case: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    contenders: list[Contender] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str | None = None

    def contender(self, name: str) -> Contender | None:
        return next((c for c in self.contenders if c.name == name), None)

    def ratios(self) -> list[Ratio]:
        out: list[Ratio] = []
        for ours in self.contenders:
            if ours.role != "ours" or ours.skipped:
                continue
            for other in self.contenders:
                if other is ours or other.role == "ours" or other.skipped:
                    continue
                if other.unit != ours.unit:
                    continue
                if ours.higher_is_better:
                    value = paired_ratio(ours.values, other.values)
                else:
                    # Lower is better (seconds): invert so >1 still means "ours is ahead".
                    value = paired_ratio(other.values, ours.values)
                out.append(Ratio(ours.name, other.name, value))
        return out

    def evaluate(self) -> list[TargetOutcome]:
        return [self._evaluate(t) for t in self.targets]

    def _evaluate(self, t: Target) -> TargetOutcome:
        ours = self.contender(t.ours)
        if ours is None or ours.skipped:
            why = ours.skipped if ours else "not measured"
            return TargetOutcome(t.text, "unknown", f"ours skipped: {why}")
        values = ours.extra.get(t.metric, []) if t.metric else ours.values
        if t.baseline is None:
            s = spread(values)
            if s is None:
                return TargetOutcome(t.text, "unknown", "no figure")
            ok = s.median <= t.factor if t.at_most else s.median >= t.factor
            return TargetOutcome(t.text, "met" if ok else "missed", f"{format_rate(s.median)} (bound {format_rate(t.factor)})")
        measured: list[tuple[float, str]] = []
        reasons: list[str] = []
        for name in (t.baseline, *t.or_best_of):
            base = self.contender(name)
            if base is None or base.skipped:
                reasons.append(f"baseline {name} skipped: {base.skipped if base else 'not measured'}")
                continue
            ratio = (
                paired_ratio(values, base.values)
                if ours.higher_is_better
                else paired_ratio(base.values, values)
            )
            if ratio is not None:
                measured.append((ratio, name))
        if not measured:
            return TargetOutcome(t.text, "unknown", "; ".join(reasons) or "no paired runs")
        ratio, name = min(measured)
        status: Status = "met" if ratio >= t.factor else "missed"
        return TargetOutcome(t.text, status, f"{ratio:.2f}x {name} (target {t.factor:.2f}x)")


def format_rate(value: float) -> str:
    """A figure for the table: thousands separators for big numbers, 3 significant digits for small."""
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _row_for(c: Contender, ratio: float | None) -> list[str]:
    s = c.summary
    if c.skipped:
        return [c.name, c.role, "skipped", c.skipped, "", ""]
    if s is None:
        return [c.name, c.role, "no result", "", "", ""]
    extra = ", ".join(
        f"{k} {format_rate(statistics.median(v))}" for k, v in c.extra.items() if v
    )
    ratio_text = "" if ratio is None else f"{ratio:.2f}x"
    return [
        c.name,
        c.role,
        f"{format_rate(s.median)} {c.unit}",
        f"{format_rate(s.min)} .. {format_rate(s.max)} (n={s.n})",
        ratio_text,
        extra,
    ]


def format_table(results: Sequence[CaseResult]) -> str:
    """The terminal table: one block per case, ours first, then targets met / missed."""
    header = ["contender", "role", "median", "min .. max", "ours/this", "other figures"]
    lines: list[str] = []
    for r in results:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        lines.append(f"== {r.case}: {r.title}" + (f" ({params})" if params else ""))
        ratios = r.ratios()
        first_ours = next((c.name for c in r.contenders if c.role == "ours" and not c.skipped), None)
        rows = [header]
        for c in r.contenders:
            ratio = next(
                (x.value for x in ratios if x.ours == first_ours and x.other == c.name), None
            )
            rows.append(_row_for(c, ratio))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for i, row in enumerate(rows):
            lines.append("  " + "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        for o in r.evaluate():
            lines.append(f"  target [{o.status.upper()}] {o.text}: {o.figure}")
        for n in r.notes:
            lines.append(f"  note: {n}")
        for c in r.contenders:
            lines += [f"  note: {c.name}: {n}" for n in c.notes]
        if r.profile:
            lines.append(f"  profile saved: {r.profile}")
        lines.append("")
    outcomes = [(r.case, o) for r in results for o in r.evaluate()]
    if outcomes:
        met = sum(o.status == "met" for _, o in outcomes)
        lines.append(f"targets: {met} of {len(outcomes)} met")
        lines += [f"  [{o.status.upper()}] {case}: {o.text}: {o.figure}" for case, o in outcomes]
        lines.append("")
    return "\n".join(lines)


def _contender_doc(c: Contender) -> dict[str, Any]:
    s = c.summary
    return {
        "name": c.name,
        "role": c.role,
        "unit": c.unit,
        "higher_is_better": c.higher_is_better,
        "values": c.values,
        "median": s.median if s else None,
        "min": s.min if s else None,
        "max": s.max if s else None,
        "q1": s.q1 if s else None,
        "q3": s.q3 if s else None,
        "skipped": c.skipped,
        "extra": {k: {"values": v, "median": statistics.median(v) if v else None} for k, v in c.extra.items()},
        "notes": c.notes,
    }


def results_document(
    results: Sequence[CaseResult], *, machine: dict[str, Any], run: dict[str, Any]
) -> dict[str, Any]:
    """The JSON written to ``results/latest.json`` (schema 1)."""
    return {
        "schema": 1,
        "machine": machine,
        "run": run,
        "cases": [
            {
                "case": r.case,
                "title": r.title,
                "params": r.params,
                "contenders": [_contender_doc(c) for c in r.contenders],
                "ratios": [
                    {"ours": x.ours, "other": x.other, "ratio": x.value} for x in r.ratios()
                ],
                "targets": [
                    {"text": o.text, "status": o.status, "figure": o.figure} for o in r.evaluate()
                ],
                "target_specs": [dataclasses.asdict(t) for t in r.targets],
                "notes": r.notes,
                "profile": r.profile,
            }
            for r in results
        ],
    }


def format_markdown(doc: dict[str, Any]) -> str:
    """The JSON document as Markdown for the README: machine, one table per case, targets."""
    m = doc["machine"]
    run = doc["run"]
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
    official = ", ".join(f"{k} {v}" for k, v in m.get("official", {}).items())
    out = [
        f"Machine: {m.get('cores')} cores ({m.get('cpu')}), Python {m.get('python')}, "
        f"broker {m.get('broker')}; {'quick' if run.get('quick') else 'full'} run, "
        f"{run.get('runs')} runs per contender, {run.get('seconds')} s; `{run.get('command', '').strip()}`.",
        "",
        f"Libraries: {libs}. Official clients: {official}.",
        "",
    ]
    for case in doc["cases"]:
        main = next((c["name"] for c in case["contenders"] if c["role"] == "ours" and not c["skipped"]), None)
        ratios = {r["other"]: r["ratio"] for r in case["ratios"] if r["ours"] == main}
        out += [f"**{case['case']}**: {case['title']}", "",
                "| contender | role | median | min .. max | ours / this |", "|---|---|---:|---:|---:|"]
        for c in case["contenders"]:
            if c["skipped"]:
                out.append(f"| {c['name']} | {c['role']} | skipped: {c['skipped']} | | |")
                continue
            if c["median"] is None:
                out.append(f"| {c['name']} | {c['role']} | no result | | |")
                continue
            ratio = ratios.get(c["name"])
            out.append(
                f"| {c['name']} | {c['role']} | {format_rate(c['median'])} {c['unit']} | "
                f"{format_rate(c['min'])} .. {format_rate(c['max'])} | "
                f"{'' if ratio is None else f'{ratio:.2f}x'} |"
            )
        out.append("")
        for t in case["targets"]:
            out.append(f"- target **{t['status']}**: {t['text']}: {t['figure']}")
        if case["targets"]:
            out.append("")
    return "\n".join(out)


def results_from_document(doc: dict[str, Any]) -> list[CaseResult]:
    """CaseResults back from the JSON (to redraw the chart or table without measuring again)."""
    out: list[CaseResult] = []
    for case in doc["cases"]:
        r = CaseResult(case=case["case"], title=case["title"], params=case["params"],
                       notes=list(case["notes"]), profile=case.get("profile"))
        r.targets = [
            Target(**{**spec, "or_best_of": tuple(spec.get("or_best_of", ()))})
            for spec in case.get("target_specs", [])
        ]
        for c in case["contenders"]:
            r.contenders.append(Contender(
                name=c["name"], role=c["role"], unit=c["unit"], values=list(c["values"]),
                higher_is_better=c["higher_is_better"], skipped=c["skipped"],
                extra={k: list(v["values"]) for k, v in c["extra"].items()}, notes=list(c["notes"]),
            ))
        out.append(r)
    return out
