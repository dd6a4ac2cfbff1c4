"""`_generated/_record.json` counts what the catalog and schemas hold, computed here independently."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from losant_async.rest import models
from tests.support.schema_examples import SCHEMA_DIR, catalog, missing_schemas, schema, schema_names
from tools.codegen import OUTPUT_DIR
from tools.codegen.naming import pascal
from tools.codegen.spec import load_spec

RECORD: dict[str, Any] = json.loads((OUTPUT_DIR / "_record.json").read_text(encoding="utf-8"))
ACTIONS = [a for r in catalog()["resources"] for a in r["actions"]]


def _paginated(action: dict[str, Any]) -> bool:
    query = {p["name"] for p in action["params"] if p["in"] == "query"}
    paging = {"page", "perPage", "limit", "offset", "startingAfterId", "endingBeforeId"}
    whole = action["method"] == "GET" and not (query & paging)  # one reply holds the whole collection
    if not ({"page", "perPage"} <= query or {"limit", "offset"} <= query or whole):
        return False
    for response in action["responses"]:
        name = response["schema"]
        if name and name not in missing_schemas():
            items = schema(name).get("properties", {}).get("items", {})
            if items.get("type") == "array":
                return True
    return False


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("resources", len(catalog()["resources"])),
        ("actions", len(ACTIONS)),
        ("schemas", len(list(SCHEMA_DIR.glob("*.json")))),
        ("missing_schemas", len(missing_schemas())),
        ("sse_actions", sum(bool(a.get("sseEvents")) for a in ACTIONS)),
        (
            "multipart_actions",
            sum(any(p["in"] == "multipart" for p in a["params"]) for a in ACTIONS),
        ),
        (
            "accepted_202_actions",
            sum(any(r["status"] == 202 for r in a["responses"]) for a in ACTIONS),
        ),
        ("paginated_actions", sum(_paginated(a) for a in ACTIONS)),
    ],
)
def test_counts_match_the_catalog(key: str, expected: int) -> None:
    assert RECORD["counts"][key] == expected


def test_struct_and_alias_counts_match_the_models_module() -> None:
    structs = [
        v
        for v in vars(models).values()
        if isinstance(v, type) and issubclass(v, models.LosantModel) and v is not models.LosantModel
    ]
    assert RECORD["counts"]["structs"] == len(structs)
    top = [pascal(n) for n in (*schema_names(), *missing_schemas())]
    aliases = [
        n
        for n in top
        if not (
            isinstance(getattr(models, n), type) and issubclass(getattr(models, n), msgspec.Struct)
        )
    ]
    assert RECORD["counts"]["aliases"] == len(aliases)
    assert set(models.__all__) >= set(top)


def test_record_names_the_spec_it_came_from_and_every_rule_fired() -> None:
    assert RECORD["spec_sha256"] == load_spec().sha256
    assert RECORD["api_version"] == catalog()["apiVersion"]
    assert RECORD["rules"] and all(isinstance(n, int) and n > 0 for n in RECORD["rules"].values())
    assert RECORD["rules"]["missing_schema_any_alias"] == len(missing_schemas())
    assert RECORD["rules"]["sse_method"] == RECORD["counts"]["sse_actions"]
    assert RECORD["rules"]["paginated_method"] == RECORD["counts"]["paginated_actions"]
