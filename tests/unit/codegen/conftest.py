"""Fixtures for the code generator's tests."""

from __future__ import annotations

import sys
from pathlib import Path

# `tools` and `tests.support` live at the repo root, which `pytest` (unlike
# `python -m pytest`) does not put on sys.path by itself.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
