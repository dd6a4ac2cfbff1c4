"""The console ships whole: every template and static file is package data, the vendored libraries carry their licences."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from losant_async.emulator.console._views import disconnect_kind
from losant_async.emulator.store import ConnectionLogEntry

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "losant_async"
CONSOLE = PACKAGE / "emulator" / "console"


def test_every_console_asset_is_package_data() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    globs = re.findall(r'"([^"]+)"', section)
    assets = [p for folder in ("templates", "static") for p in (CONSOLE / folder).rglob("*") if p.is_file()]
    assert len(assets) >= 10
    for path in assets:
        rel = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), rel


def test_each_vendored_library_has_its_licence_beside_it() -> None:
    vendor = CONSOLE / "static" / "vendor"
    names = {p.name for p in vendor.iterdir()}
    assert {"htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css"} <= names
    assert "Zero-Clause BSD" in (vendor / "LICENSE.htmx.txt").read_text(encoding="utf-8")
    assert "MIT License" in (vendor / "LICENSE.uplot.txt").read_text(encoding="utf-8")
    assert "v1.6.32" in (vendor / "uPlot.iife.min.js").read_text(encoding="utf-8")[:200]


def _entry(reason: str | None, connected: bool = False) -> ConnectionLogEntry:
    return ConnectionLogEntry("d" * 24, connected, 0, reason)


def test_each_disconnect_reason_has_its_cause() -> None:
    assert disconnect_kind(_entry("throttled")) == "throttle ban"
    assert disconnect_kind(_entry("keepalive expired")) == "keepalive"
    assert disconnect_kind(_entry("connection lost")) == "network"
    assert disconnect_kind(_entry(None)) == "client disconnected"
    assert disconnect_kind(_entry("displaced by a new connection")) == "displaced"
    assert disconnect_kind(_entry("access revoked")) == "credentials"
    assert disconnect_kind(_entry("slow consumer: output over the limit")) == "slow consumer"
    assert disconnect_kind(_entry("something new")) == "other"
    assert disconnect_kind(_entry(None, connected=True)) == "connected"


def test_every_reason_the_emulator_closes_a_session_with_has_a_cause() -> None:
    # The reasons are the literal texts of MqttSession.close / set_connection calls: one the
    # console cannot name would show as "other" on a device's connection log.
    import re
    from pathlib import Path

    import losant_async.emulator as emulator

    root = Path(emulator.__file__).parent
    reasons = {m.group(1) for f in root.rglob("*.py")
               for m in re.finditer(r"""\.close\(f?"([^"{]+)""", f.read_text())}
    assert {"access revoked", "throttled", "keepalive expired", "displaced by a new connection"} <= reasons
    unnamed = {r for r in reasons if disconnect_kind(_entry(r)) == "other"}
    assert unnamed == set()
