"""The emulator's route table: every catalog action's method and path, matched most-literal first."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["Route", "RouteTable", "load_routes"]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    resource: str
    action: str
    method: str
    path: str
    auth_required: bool
    scopes: frozenset[str]
    regex: re.Pattern[str]

    @property
    def full_name(self) -> str:
        return f"{self.resource}.{self.action}"


def _compile(path: str) -> re.Pattern[str]:
    pattern = ""
    last = 0
    for match in _PLACEHOLDER.finditer(path):
        pattern += re.escape(path[last:match.start()]) + f"(?P<{match.group(1)}>[^/]+)"
        last = match.end()
    pattern += re.escape(path[last:])
    return re.compile(f"^{pattern}$")


def _specificity(path: str) -> tuple[int, ...]:
    # literal segments sort before placeholders at the same depth, so
    # /devices/compositeState wins over /devices/{deviceId}
    return tuple(1 if seg.startswith("{") else 0 for seg in path.strip("/").split("/"))


def _rows() -> list[tuple[str, str, str, str, bool, tuple[str, ...]]]:
    from ..rest.operations import all_operations

    return [
        (op.resource, op.action, op.method.upper(), op.path, bool(op.auth_required), tuple(op.scopes))
        for op in all_operations()
    ]


class RouteTable:
    """Finds the action for a method and path."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: (_specificity(r.path), r.path, r.method))
        # placeholders never span a "/", so only routes of the same depth can match
        self._by_shape: dict[tuple[str, int], list[Route]] = {}
        for route in self.routes:
            self._by_shape.setdefault((route.method, route.path.count("/")), []).append(route)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self._by_shape.get((method, path.count("/")), ()):
            found = route.regex.match(path)
            if found is not None:
                return route, found.groupdict()
        return None


@functools.lru_cache(maxsize=1)
def load_routes() -> RouteTable:
    """Every catalog action, from the generated operations the REST client uses."""
    rows = _rows()
    return RouteTable(
        [
            Route(resource, action, method, path, auth, frozenset(scopes), _compile(path))
            for resource, action, method, path, auth, scopes in rows
        ]
    )
