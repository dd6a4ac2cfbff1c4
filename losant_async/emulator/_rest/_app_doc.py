"""An application's JSON as the API answers it: its record, its stored extra fields and its owner."""

from __future__ import annotations

import copy
from typing import Any

from ._common import Server

__all__ = ["app_json", "extras"]


def extras(srv: Server, application_id: str) -> dict[str, Any]:
    """The application's stored fields beyond its record (globals, endpointSlug, readme...)."""
    return srv.store.docs.setdefault("applications", {}).setdefault(application_id, {})


def app_json(srv: Server, application_id: str) -> dict[str, Any]:
    """The application as ``GET /applications/{id}`` answers it."""
    app = srv.store.application(application_id)
    out = {k: copy.deepcopy(v) for k, v in extras(srv, app.id).items() if k != "readme"}
    out.update(srv.app_json(app))
    org = srv.store.docs.get("orgs", {}).get(app.owner_id or "")
    if org is not None:
        out["ownerType"] = "organization"
        out["orgId"] = org["id"]
    return out
