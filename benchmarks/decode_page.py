"""Prints how much faster the typed decode of a 100-device page is than ``json.loads`` (issue 2's figure).

Run: ``python -m benchmarks.decode_page`` (or ``python benchmarks/decode_page.py``).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._cases_local import ops_per_second
from benchmarks._payloads import device_page


def main(runs: int = 7, seconds: float = 0.3) -> int:
    from losant_async import _json
    from losant_async.rest._generated.models import Devices

    page = device_page(100)
    _json.decode(page, Devices)  # fails loudly here if the page does not match the Struct
    ratios = []
    for _ in range(runs):
        typed = ops_per_second(lambda: _json.decode(page, Devices), seconds)
        loads = ops_per_second(lambda: json.loads(page), seconds)
        ratios.append(typed / loads)
    print(f"100-device page ({len(page):,} bytes): typed msgspec decode into Devices is "
          f"{statistics.median(ratios):.2f}x json.loads (median of {runs} paired runs, "
          f"min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
