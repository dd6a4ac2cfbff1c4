"""Terminal output of ``simulate``: live progress (rich on a TTY, plain lines otherwise) and the summary."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from ..simulator import Progress, SimulationReport

BUILTIN_SCENARIO = "built-in sensors"
"""The name of the packaged default scenario (its report needs no per-type section)."""

__all__ = [
    "LiveView",
    "PlainView",
    "ProgressView",
    "QuietView",
    "format_bytes",
    "format_progress",
    "make_view",
    "print_summary",
    "summary_rows",
]


def format_bytes(n: int | None) -> str:
    """``123456789`` -> ``'117.7 MiB'``."""
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_progress(p: Progress) -> str:
    """One progress line."""
    if p.phase == "connecting":
        head = f"connecting {p.connected}/{p.connections}"
    elif p.phase in ("starting",):
        head = "starting"
    elif p.phase == "backfilling":
        head = "backfilling history"
    else:
        head = f"{p.phase} {min(p.elapsed, p.duration):.1f}/{p.duration:g}s"
    # Commands due are shown beside those sent: a controller falling behind is visible as it happens.
    due = f" of {p.commands_scheduled} due" if p.commands_scheduled else ""
    line = (
        f"{head} | {p.states_per_second:.1f} states/s | sent {p.states_sent} | "
        f"commands received {p.commands_received}/{p.commands_sent} sent{due} | reconnects {p.reconnects} | "
        f"errors {p.errors}"
    )
    if p.shards > 1:
        line += f" | {p.shards} shards"
    if p.phase == "running" and p.connected < p.connections:
        line += f" | connected {p.connected}/{p.connections}"
    if p.errors and p.last_error:
        line += f" | last: {p.last_error[:80]}"
    return line


class ProgressView(Protocol):
    """Shows progress snapshots; ``interval`` is how often it wants one."""

    interval: float

    def __enter__(self) -> ProgressView: ...

    def __exit__(self, *exc: object) -> None: ...

    def update(self, p: Progress) -> None: ...


class QuietView:
    """``--quiet``: nothing."""

    interval = 1.0

    def __enter__(self) -> QuietView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, p: Progress) -> None:
        return None


class PlainView:
    """Not a terminal (CI logs, pipes): a plain line every few seconds."""

    def __init__(self, out: TextIO, interval: float = 2.0) -> None:
        self.interval = interval
        self._out = out

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, p: Progress) -> None:
        print(format_progress(p), file=self._out, flush=True)


class LiveView:
    """A terminal: one rich line redrawn twice a second."""

    interval = 0.5

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(file=out), auto_refresh=False, transient=True)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, p: Progress) -> None:
        from rich.text import Text

        # One line, cropped to the terminal: a wrapped line would leave debris as it redraws.
        self._live.update(Text(format_progress(p), no_wrap=True, overflow="ellipsis"), refresh=True)


def make_view(quiet: bool, out: TextIO | None = None) -> ProgressView:
    """The view that suits ``out``: quiet, rich when it is a TTY (and rich is installed), else plain."""
    out = out or sys.stdout
    if quiet:
        return QuietView()
    if out.isatty():
        try:
            return LiveView(out)
        except ImportError:
            pass
    return PlainView(out)


def summary_rows(r: SimulationReport) -> list[tuple[str, str]]:
    """The summary as (label, value) rows; pure."""

    def opt(v: int | None, why: str) -> str:
        return str(v) if v is not None else f"n/a ({why})"

    def ms(v: float | None) -> str:
        return f"{v:g} ms" if v is not None else "n/a (none received)"

    shards = ", ".join(f"{s.index + 1}/{s.count}" for s in r.shards)
    builtin = r.scenario == BUILTIN_SCENARIO
    rows = [
        ("scenario", r.scenario),
        ("target", "embedded emulator" if r.embedded_emulator else "Losant (or an emulator started apart)"),
        ("shards", f"{len(r.shards)} ({shards}) of a fleet of {r.fleet_devices}"
         if r.shards and (len(r.shards) > 1 or r.shards[0].count > 1) else "1 (the whole fleet)"),
        ("transport", f"{r.transport}" + (f", QoS {r.qos}" if r.transport != "rest" else "")),
        ("devices", f"{r.devices}" + (f" behind {r.gateways} gateway{'' if r.gateways == 1 else 's'}" if r.gateways else "")),
        ("rate", f"{r.rate:g} states/s per device" if builtin else "per device type (below)"),
        ("duration", f"{r.duration:.1f} s" + (" (interrupted)" if r.interrupted else "")),
        ("connect time", f"{r.connect_seconds:.2f} s"),
        *([("states backfilled", f"{r.states_backfilled} in {r.backfill_seconds:.1f} s"
            + (f" ({r.states_backfilled / r.backfill_seconds:,.0f} states/s)" if r.backfill_seconds > 0 else ""))]
          if r.states_backfilled else []),
        ("states expected", str(r.states_expected)),
        ("states sent", str(r.states_sent) + (f" ({r.states_late} more than a period late: "
                                               "the sender fell behind)" if r.states_late else "")),
        *([("states buffered", f"{r.states_buffered} (handed to devices that were not connected)")]
          if r.states_buffered else []),
        *([("states unchanged", f"{r.states_unchanged} (on-change reports skipped: nothing changed)")]
          if r.states_unchanged else []),
        *([("states held", f"{r.states_held} (reports skipped: a command set a longer interval)")]
          if r.states_held else []),
        *([("reply states", f"{r.states_replies} (ack reactions to commands)")] if r.states_replies else []),
        *([("burst states", f"{r.states_burst} (bursts and spikes, beyond the schedule)")] if r.states_burst else []),
        *([("states delayed", f"{r.states_delayed} (held back by network drops, sent later with their times)")]
          if r.states_delayed else []),
        ("states acked", opt(r.states_acked, "REST" if r.transport == "rest" else "QoS 0")),
        ("states stored", opt(r.states_stored, "no API token to count them")),
        ("states lost", opt(r.states_lost, "stored count unknown")),
        ("states/s", f"{r.states_per_second:.1f}"),
        ("commands due", str(r.commands_scheduled)),
        ("commands sent", str(r.commands_sent)
         + (f" ({r.commands_unsent} due but never sent: the controller fell behind or a call failed)"
            if r.commands_unsent else "")),
        ("commands received", str(r.commands_received)
         + (f" (+{r.commands_duplicate} duplicates)" if r.commands_duplicate else "")),
        ("commands lost", f"{r.commands_lost}" + (f" (not in {r.command_wait:g} s after the run)"
                                                  if r.commands_lost else "")),
        ("command latency", f"p50 {ms(r.command_p50_ms)}, p99 {ms(r.command_p99_ms)}"),
        ("reconnects", str(r.reconnects) + (f" ({r.reboots} reboots)" if r.reboots else "")),
        ("errors", str(r.errors) + (f" {r.errors_by_type}" if r.errors_by_type else "")),
        ("peak RSS", format_bytes(r.peak_rss_bytes)),
    ]
    if len(r.types) > 1 or not builtin:
        rows += [(f"type {name}", _type_line(section)) for name, section in r.types.items()]
    for name, c in r.commands_by_name.items():
        line = f"{c.get('sent', 0)} sent, {c.get('received', 0)} received"
        if "reactions" in c:
            line += f", {c['reactions']} reactions" + (f", {c['ignored']} unusable payloads" if c.get("ignored") else "")
        rows.append((f"command {name}", line))
    for name, c in r.faults.items():
        parts = [f"{c.get('devices', 0)} devices", f"{c.get('events', 0)} events"]
        if c.get("states_delayed"):
            parts.append(f"{c['states_delayed']} states delayed")
        if c.get("states_burst"):
            parts.append(f"{c['states_burst']} burst states")
        rows.append((f"fault {name}", ", ".join(parts)))
    if r.devices_unconnected:
        names = ", ".join(r.devices_unconnected[:10]) + (" ..." if len(r.devices_unconnected) > 10 else "")
        rows.append(("never connected", f"{len(r.devices_unconnected)} devices: {names}"))
    rows.append(("result", "OK" if r.ok else "FAILED"))
    return rows


def _type_line(section: Mapping[str, Any]) -> str:
    parts = [f"{section.get('devices', 0)} devices"]
    if section.get("interval"):
        parts.append(f"every {section['interval']:g} s" + (f" over {section['transport']}"
                                                            if section.get("transport") else ""))
    parts.append(f"{section.get('states_sent', 0)}/{section.get('states_expected', 0)} states sent")
    for key, label in (("states_buffered", "buffered"), ("states_unchanged", "unchanged"), ("states_held", "held")):
        if section.get(key):
            parts.append(f"{section[key]} {label}")
    return ", ".join(parts)


def print_summary(r: SimulationReport, out: TextIO | None = None) -> None:
    """The summary table: rich when available (plain text on a pipe), else aligned columns."""
    out = out or sys.stdout
    rows = summary_rows(r)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        width = max(len(k) for k, _ in rows)
        print("Simulation summary", file=out)
        for k, v in rows:
            print(f"  {k:<{width}}  {v}", file=out)
        out.flush()
        return
    table = Table(title="Simulation summary", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        cell = _escape(v)
        if k == "result":
            cell = f"[{'green' if r.ok else 'red'}]{cell}[/]"
        table.add_row(k, cell)
    Console(file=out).print(table)
    out.flush()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
