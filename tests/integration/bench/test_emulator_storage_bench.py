"""benchmarks.emulator_storage runs end to end at a tiny size and reports what it says it does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.emulator_storage import bytes_per_state, ingest_ratio, query_times, soak


def test_bytes_per_state_and_ingest_report_figures() -> None:
    assert 0 < bytes_per_state(devices=5, per_device=50) < 200
    figures = ingest_ratio(devices=5, states=500)
    assert figures["states"] == 500
    assert figures["data_dir_ratio"] > 0 and figures["data_dir_ratio_committed"] > 0


async def test_queries_answer_on_both_backends() -> None:
    out = await query_times(devices=5, states=500)
    assert set(out) == {"memory", "data_dir"}
    for figures in out.values():
        assert figures["stored"] == 500
        assert figures["last_value_s"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS from /proc")
@pytest.mark.parametrize("disk", [False, True])
async def test_soak_samples_rss(tmp_path: Path, disk: bool) -> None:
    out = await soak(0.5, devices=5, rate=10.0, data_dir=tmp_path if disk else None)
    assert out["backend"] == ("data_dir" if disk else "memory")
    assert out["accepted"] == out["states"] > 0
    assert out["rss_start_mb"] > 0 and len(out["samples"]) >= 2
