"""The runbook record: what a `maintain` / `rolling` run meant to do and how far it got.

One JSON record in Redis (``roleswap:<cluster>:runbook``, see :mod:`.keys`), rewritten
after every step:

    {"id", "kind": "maintain" | "rolling", "plan": [{"step", "server", "what"}],
     "done": [step index...], "phase": "running" | "done" | "failed" | "abandoned",
     "started_at", "host", "pid", "error"}

The operator's command itself is NOT stored (it may hold a secret): only its SHA-256,
so `recover` can tell the operator which steps are left, not re-run them.  A swap
inside a runbook has its own journal; recover finishes that first.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis

from roleswap.coord.keys import runbook_alive_key, runbook_key

OPEN = ("running", "failed")
ALIVE_TTL = 15  # s: a runbook whose process died is "interrupted" this long after
ALIVE_EVERY = 5.0


class RunbookRecord:
    def __init__(self, client: redis.Redis | None, cluster: str) -> None:
        self.client = client
        self.cluster = cluster
        self.record: dict[str, Any] = {}

    def begin(self, kind: str, plan: list[dict[str, str]], cmd_digest: str) -> str:
        self.record = {"id": uuid.uuid4().hex[:12], "kind": kind, "plan": plan, "done": [],
                       "phase": "running", "started_at": time.time(), "host": socket.gethostname(),
                       "pid": os.getpid(), "cmd_sha256": cmd_digest, "error": None}
        self._write()
        self._beat()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beating, name="runbook-alive", daemon=True)
        self._thread.start()
        return str(self.record["id"])

    def _beat(self) -> None:
        if self.client is not None:
            with contextlib.suppress(redis.RedisError):  # a Redis blip must not stop maintenance
                self.client.set(runbook_alive_key(self.cluster),
                                f"{self.record['host']} {self.record['pid']}", ex=ALIVE_TTL)

    def _beating(self) -> None:
        while not self._stop.wait(ALIVE_EVERY):
            self._beat()

    def alive(self) -> str | None:
        """"host pid" of a runbook process that is running now, else None.  The liveness
        key outlives a killed process by up to its TTL; a process on THIS host that is
        gone is known dead at once."""
        if self.client is None:
            return None
        raw = self.client.get(runbook_alive_key(self.cluster))
        text = raw.decode() if isinstance(raw, bytes) else raw
        return None if text is None or _dead_here(text) else text

    def step_done(self, index: int) -> None:
        self.record["done"].append(index)
        self._write()

    def finish(self, phase: str, error: str | None = None) -> None:
        self.record.update(phase=phase, error=error, ended_at=time.time())
        self._write()
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            if self.client is not None:
                with contextlib.suppress(redis.RedisError):
                    self.client.delete(runbook_alive_key(self.cluster))

    def _write(self) -> None:
        if self.client is None:
            return  # no Redis: the runbook is not recoverable (maintain says so up front)
        self.client.set(runbook_key(self.cluster), json.dumps(self.record))

    # -- reading ----------------------------------------------------------------
    def load_open(self) -> dict[str, Any] | None:
        """The last runbook if it did not finish (running when its process died, or failed)."""
        if self.client is None:
            return None
        raw = self.client.get(runbook_key(self.cluster))
        if raw is None:
            return None
        try:
            rec = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(rec, dict) or rec.get("phase") not in OPEN:
            return None
        self.record = rec
        return rec


def remaining(rec: dict[str, Any]) -> list[dict[str, str]]:
    """The plan's steps not done yet, in order."""
    done = set(rec.get("done", []))
    return [s for i, s in enumerate(rec.get("plan", [])) if i not in done]


def _dead_here(alive: str) -> bool:
    """True when ``alive`` ("host pid") names this host and a process that no longer runs."""
    host, _, pid = alive.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
