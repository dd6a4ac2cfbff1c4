"""Generated docstrings state the catalog's facts in our words: never its prose, always its facts."""

from __future__ import annotations

import ast
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.schema_examples import SCHEMA_DIR, catalog
from tools.codegen import generate

FILES = generate()
ACTIONS = [(r, a) for r in catalog()["resources"] for a in r["actions"]]


def _prose() -> Iterator[str]:
    """Every description and summary the catalog and schemas carry."""
    for _, action in ACTIONS:
        yield action.get("summary") or ""
        for part in (*action["params"], *action["responses"], *(action.get("errors") or ())):
            yield part.get("description") or ""

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("description", "title") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for path in sorted(SCHEMA_DIR.glob("*.json")):
        yield from walk(json.loads(path.read_text(encoding="utf-8")))


def _docstrings(text: str) -> list[str]:
    tree = ast.parse(text)
    out = [ast.get_docstring(tree) or ""]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(ast.get_docstring(node) or "")
        # Attribute docstrings: a string expression right after an assignment.
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for prev, cur in itertools.pairwise(body):
                if (
                    isinstance(prev, (ast.Assign, ast.AnnAssign))
                    and isinstance(cur, ast.Expr)
                    and isinstance(cur.value, ast.Constant)
                    and isinstance(cur.value.value, str)
                ):
                    out.append(cur.value.value)
    return out


ALL_DOCS = "\n".join(d for name, text in FILES.items() if name.endswith(".py") for d in _docstrings(text))


def test_no_catalog_or_schema_description_is_copied() -> None:
    # Short texts ("ID of the device") could match our words by chance; longer ones cannot.
    prose = {p for p in _prose() if len(p) >= 25}
    assert len(prose) > 500  # the check has something to bite on
    assert sorted(p for p in prose if p in ALL_DOCS) == []


@pytest.mark.parametrize(("resource", "action"), ACTIONS[::7], ids=lambda x: x["name"])
def test_method_docstring_states_the_facts(resource: dict[str, Any], action: dict[str, Any]) -> None:
    module = ast.parse(FILES[f"resources/{resource['name']}.py"])
    methods = [
        n
        for n in ast.walk(module)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        and n.name == action["name"]
        and ast.get_docstring(n)
    ]
    assert len(methods) == 1
    doc = ast.get_docstring(methods[0]) or ""
    assert f"`{action['method']} {action['path']}`" in doc
    for scope in action.get("scopes") or ():
        assert f"`{scope}`" in doc
    for param in action["params"]:
        assert f"`{param['name']}`" in doc
        for value in param.get("enum") or ():
            assert f"`{value}`" in doc
    for error in action.get("errors") or ():
        assert str(error["status"]) in doc.split("Raises:")[1]
    assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc


def test_every_public_generated_function_and_class_has_a_docstring() -> None:
    for name, text in FILES.items():
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) or (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not node.name.startswith("_")
                and not any(
                    isinstance(d, ast.Name) and d.id == "overload" for d in node.decorator_list
                )
            ):
                assert ast.get_docstring(node), f"{name}: {node.name}"
