"""mkdocs hook: the API reference pages, one per public module, generated from the package at build time.

A public module is one whose dotted path has no part starting with ``_``, plus the
REST resources (``losant_async.rest._generated.resources.*``, reached as attributes
of ``LosantClient``). New public modules get a page without editing mkdocs.yml;
content pages written elsewhere (``emulator.md``, ``simulator.md``) join the nav
when they exist.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PACKAGE = "losant_async"
# Pages of their own, in this order; other public modules follow alphabetically.
LEADING = [
    "losant_async",
    "losant_async.errors",
    "losant_async.rest",
    "losant_async.rest.models",
    "losant_async.mqtt",
    "losant_async.emulator",
    "losant_async.testing",
    "losant_async.testing.pytest_plugin",
    "losant_async.cli",
]
# Modules documented through the package that re-exports their names.
FOLDED = ("losant_async.rest.", "losant_async.mqtt.", "losant_async.cli.", "losant_async.simulator.")
OPTIONAL_PAGES = {"emulator.md": "The emulator in depth", "simulator.md": "The fleet simulator"}

_pages: dict[str, str] = {}


def _public_modules() -> list[str]:
    root = importlib.import_module(PACKAGE)
    names = {PACKAGE}
    for info in pkgutil.walk_packages(root.__path__, PACKAGE + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]):
            continue
        names.add(info.name)
    kept = {n for n in names if n in LEADING or not n.startswith(FOLDED)}
    return [n for n in LEADING if n in kept] + sorted(kept - set(LEADING))


def _resources() -> list[tuple[str, str]]:
    pkg = importlib.import_module(f"{PACKAGE}.rest._generated.resources")
    found: list[tuple[str, str]] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        classes = [n for n in getattr(module, "__all__", ()) if n.endswith("Resource")]
        found.extend((info.name, f"{module.__name__}.{c}") for c in classes)
    return sorted(found)


def _page_for(module: str) -> str:
    return "reference/" + ("index" if module == PACKAGE else module.removeprefix(PACKAGE + ".")) + ".md"


def _top_level_page() -> str:
    root: Any = importlib.import_module(PACKAGE)
    lazy: dict[str, str] = getattr(root, "_LAZY", {})
    errors = importlib.import_module(f"{PACKAGE}.errors")
    rows = []
    for name in sorted(root.__all__, key=str.lower):
        if name in lazy:
            where = f"{PACKAGE}.{lazy[name]}"
        elif name in getattr(errors, "__all__", ()):
            where = f"{PACKAGE}.errors"
        else:
            where = PACKAGE
        target = f"{where}.{name}" if name != "errors" else f"{PACKAGE}.errors"
        rows.append(f"| [`{name}`][{target}] | `{where}` |")
    return "\n".join([
        "# `losant_async`",
        "",
        f"::: {PACKAGE}",
        "    options:",
        "      members: [MissingExtraError, __version__]",
        "      show_root_heading: false",
        "",
        "## Every name `losant_async` exports",
        "",
        "| name | documented in |",
        "|---|---|",
        *rows,
        "",
    ])


def _module_page(module: str) -> str:
    title = f"# `{module}`\n\n"
    if module.endswith(".cli"):
        return title + f"::: {module}\n    options:\n      members: [main]\n      show_root_heading: false\n"
    return title + f"::: {module}\n    options:\n      show_root_heading: false\n"


def _resources_index(resources: list[tuple[str, str]]) -> str:
    lines = [
        "# REST resources",
        "",
        "Each resource of the Losant API is an attribute of `LosantClient`, named as",
        "the API catalog names it (`client.device`, `client.application_api_tokens`);",
        "each action is a coroutine method with keyword-only, snake_case parameters.",
        "These classes are generated from `spec/` (never import them: reach them",
        "through the client).",
        "",
        "| attribute | class |",
        "|---|---|",
    ]
    for attr, path in resources:
        lines.append(f"| `client.{attr}` | [`{path.rsplit('.', 1)[1]}`](resources/{attr}.md) |")
    return "\n".join(lines) + "\n"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    _pages.clear()
    modules = _public_modules()
    resources = _resources()
    nav_reference: list[Any] = []
    for module in modules:
        page = _page_for(module)
        _pages[page] = _top_level_page() if module == PACKAGE else _module_page(module)
        nav_reference.append({module: page})
    _pages["reference/resources.md"] = _resources_index(resources)
    nav_resources: list[Any] = ["reference/resources.md"]
    for attr, path in resources:
        page = f"reference/resources/{attr}.md"
        _pages[page] = f"# `client.{attr}`\n\n::: {path}\n    options:\n      show_root_heading: false\n"
        nav_resources.append({attr: page})
    nav_reference.append({"REST resources": nav_resources})

    docs_dir = Path(config.docs_dir)
    nav: list[Any] = []
    for entry in config.nav or []:
        if isinstance(entry, dict) and "API reference" in entry:
            nav.append({"API reference": nav_reference})
            continue
        if isinstance(entry, dict) and "Guides" in entry:
            guides = list(entry["Guides"])
            for page, title in OPTIONAL_PAGES.items():
                if (docs_dir / page).exists():
                    guides.append({title: page})
            nav.append({"Guides": guides})
            continue
        nav.append(entry)
    config.nav = nav
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for page, content in _pages.items():
        files.append(File.generated(config, page, content=content))
    return files
