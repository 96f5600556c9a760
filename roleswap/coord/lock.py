"""The cluster lock: at most one swap per cluster at a time (Redis SET NX with a TTL).

The TTL means a crashed roleswap does not block the cluster forever; a live
one refreshes it at every step.  Release and refresh only act if the token is
still ours (compare-and-delete in Lua), so an expired-and-retaken lock is never
released by the wrong owner.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Any, cast

import redis

from roleswap.coord.keys import lock_key

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_REASSERT = """
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ClusterLock:
    def __init__(self, client: redis.Redis, cluster: str, ttl: float) -> None:
        self.client = client
        self.key = lock_key(cluster)
        self.ttl_ms = int(ttl * 1000)
        self.token = ""

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (None if free)."""
        return parse_holder(self.client.get(self.key))

    def acquire(self, swap_id: str) -> bool:
        value = json.dumps({"swap_id": swap_id, "host": socket.gethostname(), "pid": os.getpid(),
                            "at": time.time(), "nonce": secrets.token_hex(8)})
        if self.client.set(self.key, value, nx=True, px=self.ttl_ms):
            self.token = value
            return True
        return False

    def adopt(self, token: str) -> None:
        """Take over a lock value recorded in the journal (recovery)."""
        self.token = token

    def taken_at(self) -> float | None:
        """When our token was taken (epoch seconds, from the token itself), or None."""
        try:
            at = json.loads(self.token).get("at") if self.token else None
        except (ValueError, AttributeError):
            return None
        return float(at) if isinstance(at, int | float) else None

    def refresh(self) -> bool:
        if not self.token:
            return False
        return bool(self.client.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms))

    def reassert(self) -> bool:
        """Hold the lock again with our token if it is free or still ours (after a Redis
        that lost it: a failover); False if another swap holds it now."""
        if not self.token:
            return False
        return bool(self.client.eval(_REASSERT, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> bool:
        if not self.token:
            return False
        done = bool(self.client.eval(_RELEASE, 1, self.key, self.token))
        self.token = ""
        return done


def parse_holder(raw: Any) -> dict[str, Any] | None:
    """A lock value as :meth:`ClusterLock.holder` returns it (None for no value)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return cast(dict[str, Any], data) if isinstance(data, dict) else {"token": str(raw)}
    except ValueError:
        return {"token": str(raw)}
