"""The emulator's REST API: one module per resource group, a dispatcher, and the catalog-driven engine."""

from __future__ import annotations

from typing import Any

from ._dispatch import RestApp

__all__ = ["RestApp", "coverage", "coverage_report"]


def coverage() -> dict[str, str]:
    """Catalog action -> how the emulator answers it: ``hand`` (its own handler), ``engine``
    (generic collection/item CRUD) or ``schema`` (a reply built from the response schema over
    the stored objects). An action missing here would answer 501."""
    from ..store import Store

    async def no_commands(*_args: Any) -> None:
        return None

    return RestApp(Store(), no_commands).coverage()


def coverage_report() -> tuple[str, int]:
    """The text ``losant-async emulator --coverage`` prints, and how many actions answer 501."""
    from .._routes import load_routes

    answered = coverage()
    every = [r.full_name for r in load_routes().routes]
    missing = sorted(name for name in every if name not in answered)
    counts = {kind: sum(1 for v in answered.values() if v == kind) for kind in ("hand", "engine", "schema")}
    lines = [
        f"{len(answered)} of {len(every)} catalog actions emulated: {counts['hand']} by hand, "
        f"{counts['engine']} by the generic engine (collection/item CRUD), "
        f"{counts['schema']} by schema-built replies over the stored objects.",
        "Actions answering 501 Not Implemented: " + (", ".join(missing) if missing else "none"),
    ]
    return "\n".join(lines), len(missing)
