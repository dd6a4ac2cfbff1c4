"""The payloads every contender is given: one state, realistic API replies, device ids."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "APP_ID",
    "STATE",
    "device_id",
    "device_page",
    "time_series",
]

APP_ID = "5f0c0ffee0c0ffee0c0ffee0"

# The state each publisher sends, encoded by each contender its own way.
STATE: dict[str, Any] = {"temperature": 21.5, "humidity": 40, "status": "ok", "battery": 3.71}

_T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)


def device_id(i: int, prefix: str = "d") -> str:
    """A 24-hex device id, stable for ``i`` (``prefix`` as one hex digit keeps fleets apart)."""
    head = {"d": "d", "c": "c", "f": "f", "e": "e"}.get(prefix, "a")
    return f"{head}{i:023x}"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _device(i: int, rng: random.Random) -> dict[str, Any]:
    created = _T0 - timedelta(days=rng.randint(1, 900), seconds=rng.randint(0, 86400))
    attrs = [
        {"name": n, "dataType": dt, "attributeTags": {"unit": u}}
        for n, dt, u in (
            ("temperature", "number", "C"),
            ("humidity", "number", "%"),
            ("status", "string", ""),
            ("battery", "number", "V"),
        )
    ]
    did = device_id(i)
    base = f"/applications/{APP_ID}"
    return {
        "_type": "device",
        "_links": {  # Losant's replies are HAL: links on by default (_links=true)
            "application": {"href": base},
            "self": {"href": f"{base}/devices/{did}"},
            "devices": {"href": f"{base}/devices"},
        },
        "id": did,
        "deviceId": did,
        "applicationId": APP_ID,
        "creationDate": _iso(created),
        "lastUpdated": _iso(created + timedelta(days=rng.randint(0, 30))),
        "name": f"Sensor {i:04d} floor {i % 12}",
        "description": f"Environmental sensor {i} in building {i % 7}",
        "tags": [
            {"key": "floor", "value": str(i % 12)},
            {"key": "building", "value": f"B{i % 7}"},
            {"key": "model", "value": rng.choice(["ENV-100", "ENV-200", "ENV-300"])},
        ],
        "attributes": attrs,
        "deviceClass": rng.choice(["standalone", "peripheral", "gateway"]),
        "connectionInfo": {
            "time": _iso(_T0 - timedelta(seconds=rng.randint(0, 3600))),
            "connected": rng.choice([0, 1]),
        },
        "ancestorIds": [],
        "keepDuplicates": False,
        "systemInterval": 0,
    }


def device_page(n: int = 100, *, seed: int = 5) -> bytes:
    """A ``GET /applications/{id}/devices`` reply with ``n`` devices, HAL links included as Losant sends them (~116 KB for 100)."""
    rng = random.Random(seed)
    doc = {
        "_type": "devices",
        "_links": {"application": {"href": f"/applications/{APP_ID}"},
                   "self": {"href": f"/applications/{APP_ID}/devices"}},
        "items": [_device(i, rng) for i in range(n)],
        "count": n,
        "totalCount": n * 10,
        "perPage": n,
        "page": 0,
        "sortField": "name",
        "sortDirection": "asc",
        "applicationId": APP_ID,
    }
    return json.dumps(doc).encode()


def time_series(points: int = 1000, *, seed: int = 7) -> bytes:
    """A ``POST /applications/{id}/data/time-series-query`` reply: one device, ``points`` points."""
    rng = random.Random(seed)
    start = _T0 - timedelta(minutes=points)
    doc = {
        "start": _iso(start),
        "end": _iso(_T0),
        "resolution": 60000,
        "aggregation": "MEAN",
        "limit": points,
        "order": "asc",
        "devices": {
            device_id(1): {
                "name": "Sensor 0001",
                "tags": {"floor": ["1"], "building": ["B1"]},
                "points": [
                    {
                        "time": _iso(start + timedelta(minutes=k)),
                        "data": {
                            "temperature": round(20 + rng.random() * 5, 3),
                            "humidity": round(35 + rng.random() * 10, 3),
                            "battery": round(3.6 + rng.random() * 0.2, 4),
                        },
                    }
                    for k in range(points)
                ],
            }
        },
    }
    return json.dumps(doc).encode()
