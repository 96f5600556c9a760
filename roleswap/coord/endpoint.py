"""The published primary: where apps learn which server to write to.

``publish`` stores {name, host, port, since, swap_id} and announces it on the
events channel; ``current_primary`` is the helper apps call at start-up.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from roleswap.coord.keys import events_channel, primary_key


def publish(client: redis.Redis, cluster: str, name: str, host: str, port: int,
            swap_id: str = "") -> dict[str, Any]:
    record = {"name": name, "host": host, "port": port, "since": time.time(), "swap_id": swap_id}
    data = json.dumps(record)
    pipe = client.pipeline(transaction=True)
    pipe.set(primary_key(cluster), data)
    pipe.publish(events_channel(cluster), data)
    pipe.execute()
    return record


def current_primary(client: redis.Redis, cluster: str) -> dict[str, Any] | None:
    """The published primary, or None if roleswap never published one for ``cluster``."""
    raw = client.get(primary_key(cluster))
    if raw is None:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None


def restore(client: redis.Redis, cluster: str, previous: dict[str, Any] | None) -> None:
    """Put back what was published before (undo of a publish)."""
    if previous is None:
        client.delete(primary_key(cluster))
        return
    data = json.dumps(previous)
    pipe = client.pipeline(transaction=True)
    pipe.set(primary_key(cluster), data)
    pipe.publish(events_channel(cluster), data)
    pipe.execute()
