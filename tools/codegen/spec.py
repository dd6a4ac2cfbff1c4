"""Loading the vendored API spec (``losant_async/_spec/catalog.json`` and its ``schemas/``) and hashing it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["REPO_ROOT", "Spec", "load_spec"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Spec:
    """Everything the generator reads, and the hash that identifies it."""

    catalog: dict[str, Any]
    schemas: dict[str, dict[str, Any]]
    """Schema name -> parsed JSON Schema, sorted by name."""
    missing: tuple[str, ...]
    """Definitions the catalog names but the spec does not ship."""
    sha256: str


def load_spec(spec_dir: Path | None = None) -> Spec:
    """Read ``spec_dir`` (default: the package's ``losant_async/_spec/``); the hash covers every input file."""
    root = spec_dir if spec_dir is not None else REPO_ROOT / "losant_async" / "_spec"
    digest = hashlib.sha256()
    inputs = [root / "catalog.json", root / "schemas" / "MISSING.txt"]
    inputs += sorted((root / "schemas").glob("*.json"))
    raw: dict[Path, bytes] = {}
    for path in inputs:
        data = path.read_bytes()
        raw[path] = data
        # The name goes in too, so renaming a schema changes the hash.
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
    catalog = json.loads(raw[root / "catalog.json"])
    schemas = {
        p.stem: json.loads(raw[p]) for p in inputs if p.suffix == ".json" and p.parent.name == "schemas"
    }
    missing_text = raw[root / "schemas" / "MISSING.txt"].decode()
    missing = tuple(sorted(line.strip() for line in missing_text.splitlines() if line.strip()))
    return Spec(catalog=catalog, schemas=dict(sorted(schemas.items())), missing=missing, sha256=digest.hexdigest())
