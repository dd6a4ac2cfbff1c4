"""The package's shape: import directions, one boundary per outside library, modules that import alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import losant_async

PKG = Path(losant_async.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


MODULES = _modules()
IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _importers_of(prefix: str) -> set[str]:
    return {
        name
        for name, imported in IMPORTS.items()
        if any(i == prefix or i.startswith(prefix + ".") for i in imported)
    }


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_leaves_import_nothing_but_leaves() -> None:
    leaves = {"losant_async.errors", "losant_async._json", "losant_async._time", "losant_async._version"}
    for leaf in leaves:
        internal = {i for i in IMPORTS[leaf] if i.startswith("losant_async")}
        outside = {i for i in internal if ".".join(i.split(".")[:2]) not in leaves}
        assert not outside, (leaf, outside)


def _uses_servers(i: str) -> bool:
    return _under(i, "losant_async.testing") or _under(i, "losant_async.emulator")


def test_mqtt_never_imports_rest_or_the_emulator() -> None:
    for name in MODULES:
        if _under(name, "losant_async.mqtt"):
            bad = {i for i in IMPORTS[name] if _under(i, "losant_async.rest") or _uses_servers(i)}
            assert not bad, (name, bad)


def test_rest_never_imports_mqtt_or_the_emulator() -> None:
    for name in MODULES:
        if _under(name, "losant_async.rest"):
            bad = {i for i in IMPORTS[name] if _under(i, "losant_async.mqtt") or _uses_servers(i)}
            assert not bad, (name, bad)


def test_library_never_imports_the_emulator_or_testing() -> None:
    users = {n for n in _importers_of("losant_async.emulator") if not _uses_servers(n)}
    users |= {n for n in _importers_of("losant_async.testing") if not _under(n, "losant_async.testing")}
    # The CLI is an application on top of the library: it runs the emulator.
    assert {u for u in users if not _under(u, "losant_async.cli")} == set()


def test_the_emulator_never_imports_testing() -> None:
    # testing re-exports the emulator (and holds the pytest plugin), never the other way round.
    users = {n for n in _importers_of("losant_async.testing") if _under(n, "losant_async.emulator")}
    assert users == set()


def _module_edges(prefix: str) -> dict[str, set[str]]:
    """Imports between modules under ``prefix``; ``from . import x`` names x, not its package."""
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        if not _under(name, prefix):
            continue
        edges[name] = {
            i for i in IMPORTS[name] if i in MODULES and _under(i, prefix) and i != name and not _under(name, i)
        }
    return edges


def _circles(prefix: str) -> list[list[str]]:
    edges = _module_edges(prefix)
    circles: list[list[str]] = []

    def walk(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in on_path:
                circles.append([*path[path.index(nxt):], nxt])
            elif nxt not in done:
                on_path.add(nxt)
                walk(nxt, [*path, nxt], on_path, done)
                on_path.discard(nxt)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            walk(start, [start], {start}, done)
    return circles


def test_no_import_circle_in_the_package() -> None:
    # Type-checking imports count too: a circle there is a layering mistake all the same.
    assert len(_module_edges("losant_async.mqtt._connection")) > 1  # a package of modules, walked too
    circles = _circles("losant_async")
    assert circles == [], circles


def test_one_module_per_outside_client_library() -> None:
    aiohttp_client_users = {
        n
        for n in _importers_of("aiohttp")
        if _under(n, "losant_async.rest") or _under(n, "losant_async.mqtt")
    }
    assert aiohttp_client_users <= {"losant_async.rest._transport"}, aiohttp_client_users
    mqtt_lib_users = (_importers_of("aiomqtt") | _importers_of("paho")) - {
        n for n in MODULES if _uses_servers(n) or _under(n, "losant_async.cli")
    }
    # The boundary is one package (its modules split one connection by concern), nothing outside it.
    assert all(_under(n, "losant_async.mqtt._connection") for n in mqtt_lib_users), mqtt_lib_users


def test_generated_code_imports_only_its_contract() -> None:
    allowed = (
        "losant_async.rest._generated",
        "losant_async.rest._model",
        "losant_async.rest._operation",
        "losant_async.rest._resource",
        "losant_async.rest.options",
        "losant_async.rest.pagination",
        "losant_async.rest.sse",
    )
    for name in MODULES:
        if _under(name, "losant_async.rest._generated"):
            internal = {i for i in IMPORTS[name] if i.startswith("losant_async")}
            assert all(any(_under(i, a) for a in allowed) for i in internal), (name, internal)


def test_every_module_imports_on_its_own() -> None:
    names = sorted(n for n in MODULES if not _under(n, "losant_async.rest._generated.resources"))
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'losant_async' or m.startswith('losant_async.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_importing_the_package_is_light() -> None:
    script = (
        "import sys, losant_async\n"
        "heavy = [m for m in sys.modules if m.startswith('losant_async.rest._generated.resources') "
        "or m in ('aiomqtt', 'amqtt')]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
