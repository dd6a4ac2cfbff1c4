"""Optional dependencies: which extra brings which module, and the one-line error when one is missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import LosantError

__all__ = ["EXTRA_FOR_MODULE", "MissingExtraError", "extra_for_module", "import_extra", "require_extra"]

# Top-level module -> the extra of losant-async that installs it.
EXTRA_FOR_MODULE: dict[str, str] = {
    "jsonschema": "emulator",
    "cryptography": "emulator",
    "jinja2": "emulator",
    "rich": "cli",
    "pytest": "testing",
    "pytest_asyncio": "testing",
    "ray": "ray",
}


class MissingExtraError(LosantError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that brings it.

    Also a ``ModuleNotFoundError`` (so an ``ImportError``: existing ``except
    ImportError`` code keeps working), whose ``name`` is the missing module and
    whose ``extra`` is the losant-async extra to install.
    """

    def __init__(self, extra: str, module: str, feature: str | None = None) -> None:
        install = f"pip install 'losant-async[{extra}]'"
        if feature:
            message = f"{feature} needs the {extra!r} extra (module {module!r} is missing): {install}"
        else:
            message = f"module {module!r} is missing: {install}"
        super().__init__(message, name=module)
        self.extra = extra
        self.feature = feature

    # Tracebacks and reprs show the public name (``losant_async.MissingExtraError``).
    __module__ = "losant_async"

    def __reduce__(self) -> tuple[type[MissingExtraError], tuple[str, str, str | None]]:
        return (type(self), (self.extra, self.name or "", self.feature))


def extra_for_module(module: str) -> str | None:
    """The extra that installs ``module`` (a dotted name is looked up by its top level), or None."""
    return EXTRA_FOR_MODULE.get(module.partition(".")[0])


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(extra: str, *modules: str, feature: str | None = None) -> None:
    """Raise :class:`MissingExtraError` unless every top-level module in ``modules`` is installed.

    Only looks the modules up (nothing is imported), so it is cheap enough for a constructor.
    """
    for module in modules:
        if not _installed(module):
            raise MissingExtraError(extra, module, feature)


def import_extra(module: str, extra: str | None = None, *, feature: str | None = None) -> ModuleType:
    """Import ``module``; when it (or what it needs from the same extra) is missing, a MissingExtraError."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        chosen = extra or extra_for_module(missing) or extra_for_module(module)
        if chosen is None:
            raise
        raise MissingExtraError(chosen, missing.partition(".")[0], feature) from exc
