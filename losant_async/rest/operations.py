"""Every generated ``Operation`` of the API, for tools that work over the whole surface (emulator, tests)."""

from __future__ import annotations

import importlib

from ._generated import RESOURCES
from ._operation import Operation

__all__ = ["all_operations", "find_operation"]


def all_operations() -> list[Operation]:
    """Every action of every resource, in catalog order (imports every resource module)."""
    ops: list[Operation] = []
    for module_name, _ in RESOURCES.values():
        module = importlib.import_module(module_name)
        ops.extend(module.OPERATIONS)
    return ops


def find_operation(resource: str, action: str) -> Operation:
    """The operation ``resource.action`` (catalog names, e.g. ``("device", "send_state")``).

    Raises ``KeyError`` naming what was not found.
    """
    entry = RESOURCES.get(resource)
    if entry is None:
        raise KeyError(f"no resource named {resource!r}")
    module = importlib.import_module(entry[0])
    for op in module.OPERATIONS:
        if op.action == action:
            found: Operation = op
            return found
    raise KeyError(f"resource {resource!r} has no action named {action!r}")
