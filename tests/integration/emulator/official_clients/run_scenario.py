"""Runs scenario.json with Losant's official Python client (losant-rest from PyPI), unmodified but for the base URL.

Usage: python run_scenario.py '<context JSON>'  -> prints {stepName: {ok: result} | {error: [status, type]}}
Runs in the official clients' own virtualenv: it imports nothing of losant_async.
"""

import json
import os
import sys

from losant_rest import Client
from losant_rest.losant_error import LosantError

ctx = json.loads(sys.argv[1])
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenario.json"), encoding="utf-8") as fh:
    scenario = json.load(fh)
results = {}


def lookup(ref):
    head, *rest = ref[1:].split(".")
    value = ctx if head == "ctx" else results.get(head, {}).get("ok")
    for part in rest:
        value = None if value is None else value.get(part)
    return value


def resolve(node):
    if isinstance(node, str) and node.startswith("$"):
        return lookup(node)
    if isinstance(node, list):
        return [resolve(v) for v in node]
    if isinstance(node, dict):
        return {k: resolve(v) for k, v in node.items()}
    return node


for step in scenario["steps"]:
    token = {"none": None, "device": (results.get("auth", {}).get("ok") or {}).get("token"), "bad": "not-a-token"}.get(step["as"], ctx["apiToken"])
    client = Client(token, url=ctx["url"])
    resource, action = step["call"].split(".")
    try:
        results[step["name"]] = {"ok": getattr(getattr(client, resource), action)(**resolve(step["params"]))}
    except LosantError as exc:
        data = exc.data if isinstance(exc.data, dict) else {}
        results[step["name"]] = {"error": [exc.status, data.get("type")]}
print(json.dumps(results))
