"""The simulator's terminal output: progress lines, the summary, the choice of view."""

from __future__ import annotations

import io

from losant_async.cli._render import (
    PlainView,
    QuietView,
    format_bytes,
    format_progress,
    make_view,
    print_summary,
    summary_rows,
)
from losant_async.simulator import Progress, SimulationConfig, SimulationStats, build_report


def _progress(**kw: object) -> Progress:
    base: dict[str, object] = dict(
        phase="running", elapsed=2.5, duration=10.0, devices=5, connections=5, connected=5, states_sent=12,
        states_per_second=4.8, commands_sent=3, commands_received=2, reconnects=1, errors=0,
        last_error=None,
    )
    base.update(kw)
    return Progress(**base)  # type: ignore[arg-type]


def test_progress_line_shows_the_counters() -> None:
    line = format_progress(_progress())
    for part in ("2.5/10s", "4.8 states/s", "sent 12", "commands received 2/3 sent", "reconnects 1", "errors 0"):
        assert part in line
    assert "last:" not in line
    assert "last: ConnectError: boom" in format_progress(_progress(errors=1, last_error="ConnectError: boom"))
    assert "connecting 2/5" in format_progress(_progress(phase="connecting", connected=2))
    assert "connected 4/5" in format_progress(_progress(connected=4))
    assert "connected" not in format_progress(_progress())
    # A controller behind its rounds shows as it happens: 3 sent of 9 due.
    assert "commands received 2/3 sent of 9 due" in format_progress(_progress(commands_scheduled=9))


def test_views() -> None:
    assert isinstance(make_view(True, io.StringIO()), QuietView)
    out = io.StringIO()
    view = make_view(False, out)
    assert isinstance(view, PlainView)
    with view:
        view.update(_progress())
    assert "sent 12" in out.getvalue()


def test_format_bytes() -> None:
    assert format_bytes(None) == "n/a"
    assert format_bytes(512) == "512 B"
    assert format_bytes(150 * 1024 * 1024) == "150.0 MiB"


def test_summary() -> None:
    report = build_report(
        SimulationConfig(devices=2, duration=1.0), SimulationStats(states_sent=2), gateways=0,
        run_seconds=1.0, connect_seconds=0.1, states_stored=1, interrupted=False, embedded=True,
        peak_rss=1024, machine={},
    )
    rows = dict(summary_rows(report))
    assert rows["states lost"] == "1" and rows["result"] == "FAILED"
    assert rows["target"] == "embedded emulator"
    out = io.StringIO()
    print_summary(report, out)
    text = out.getvalue()
    assert "states stored" in text and "FAILED" in text and "\x1b[" not in text
