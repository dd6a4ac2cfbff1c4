"""The emulator's REST API: one module per resource group, a dispatcher, and the catalog-driven engine."""

from __future__ import annotations

from typing import Any

from ._dispatch import RestApp

__all__ = ["RestApp", "coverage", "coverage_report", "effects"]


def coverage() -> dict[str, str]:
    """Catalog action -> how the emulator answers it: ``hand`` (its own handler), ``engine``
    (generic collection/item CRUD) or ``schema`` (a reply built from the response schema over
    the stored objects). An action missing here would answer 501."""
    from ..store import Store

    async def no_commands(*_args: Any) -> None:
        return None

    return RestApp(Store(), no_commands).coverage()


def effects() -> dict[str, tuple[str, str]]:
    """Catalog action -> (``full effect`` | ``recorded, not run`` | ``schema only``, the reason when not run).

    ``schema only`` is a write answered from its response schema alone: there must be none."""
    from .._routes import load_routes
    from ._coverage import NOT_RUN

    how = coverage()
    out: dict[str, tuple[str, str]] = {}
    for route in load_routes().routes:
        name = route.full_name
        if name in NOT_RUN:
            out[name] = ("recorded, not run", NOT_RUN[name])
        elif how.get(name) == "schema":
            out[name] = ("schema only", "")
        else:
            out[name] = ("full effect", "")
    return out


def coverage_report() -> tuple[str, int]:
    """The text ``losant-async emulator --coverage`` prints, and how many actions fail it
    (answering 501, or answered from the response schema alone)."""
    from .._routes import load_routes

    answered = coverage()
    split = effects()
    every = [r.full_name for r in load_routes().routes]
    missing = sorted(name for name in every if name not in answered)
    counts = {kind: sum(1 for v in answered.values() if v == kind) for kind in ("hand", "engine", "schema")}
    full = sorted(n for n, (k, _) in split.items() if k == "full effect")
    recorded = sorted(n for n, (k, _) in split.items() if k == "recorded, not run")
    schema_only = sorted(n for n, (k, _) in split.items() if k == "schema only")
    lines = [
        f"{len(answered)} of {len(every)} catalog actions emulated: {counts['hand']} by hand, "
        f"{counts['engine']} by the generic engine (collection/item CRUD), "
        f"{counts['schema']} by schema-built replies over the stored objects.",
        f"Effects: {len(full)} full effect, {len(recorded)} recorded, not run, {len(schema_only)} answered by the schema alone.",
        "Actions answering 501 Not Implemented: " + (", ".join(missing) if missing else "none"),
        "Actions answered by the schema alone: " + (", ".join(schema_only) if schema_only else "none"),
        "Recorded, not run (the emulator lacks what runs them):",
        *(f"  {name}: {split[name][1]}" for name in recorded),
    ]
    return "\n".join(lines), len(missing) + len(schema_only)
