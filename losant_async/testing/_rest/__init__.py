"""The emulator's REST API: one module per resource group, a dispatcher, and the catalog-driven engine."""

from __future__ import annotations

from ._dispatch import RestApp

__all__ = ["RestApp"]
