"""Is the unfinished swap in the journal running right now, or was it interrupted?

The journal alone cannot tell: its phase is ``running`` both while a swap runs and
after its process died.  The cluster lock can: a live swap holds it (and refreshes
it at every step).  So an unfinished journal is a *running* swap when the lock is
held by that same swap id, unless the holder runs on this host and its PID is gone
(a SIGKILLed swap leaves its lock until the TTL expires).  Without Redis (no lock)
the journal's own host and PID are checked the same way.  Anything else is an
*interrupted* swap, for ``roleswap recover``.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from roleswap.coord.journal import Journal
from roleswap.coord.lock import ClusterLock

__all__ = ["UnfinishedSwap", "unfinished_swap"]


@dataclass(frozen=True)
class UnfinishedSwap:
    """An unfinished journal record and what is known about its process."""

    record: dict[str, Any]
    running: bool
    holder: dict[str, Any] | None  # the cluster lock's holder, if any
    lock_ttl_s: float | None  # seconds until the lock expires (None: no lock / unknown)
    lock_error: str | None = None  # the lock could not be read (Redis error type)

    @property
    def swap_id(self) -> str:
        return str(self.record.get("swap_id"))

    @property
    def last_step(self) -> dict[str, Any]:
        steps = self.record.get("steps") or []
        return dict(steps[-1]) if steps else {}

    def who(self) -> str:
        """``swap ID (db1->db2) on HOST, pid PID, since HH:MM:SS (Ns ago)``."""
        src = self.holder if self.running and self.holder else self.record
        at = float(src.get("at") or src.get("started_at") or self.record.get("started_at") or 0)
        since = (f", since {time.strftime('%H:%M:%S', time.localtime(at))} "
                 f"({max(0.0, time.time() - at):.0f}s ago)" if at else "")
        return (f"swap {self.swap_id} ({self.record.get('from')}->{self.record.get('to')}) on "
                f"{src.get('host', '?')}, pid {src.get('pid', '?')}{since}")

    def as_dict(self) -> dict[str, Any]:
        last = self.last_step
        return {"swap_id": self.swap_id, "from": self.record.get("from"),
                "to": self.record.get("to"), "phase": self.record.get("phase"),
                "running": self.running, "host": (self.holder or self.record).get("host"),
                "pid": (self.holder or self.record).get("pid"),
                "started_at": self.record.get("started_at"),
                "last_step": last.get("name"), "last_status": last.get("status"),
                "lock_ttl_s": self.lock_ttl_s}


def _pid_is_roleswap(pid: Any) -> bool:
    """Whether ``pid`` (on this host) is alive and a roleswap process."""
    try:
        cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError, TypeError):
        return False
    return b"roleswap" in cmd


def _alive(info: dict[str, Any]) -> bool:
    """Whether the process ``info`` names may still run (unknowable on another host: True)."""
    if info.get("host") != socket.gethostname():
        return True
    return _pid_is_roleswap(info.get("pid"))


def unfinished_swap(journal: Journal, client: redis.Redis | None, cluster: str) -> UnfinishedSwap | None:
    """The unfinished swap of ``journal`` (None if there is none), running or interrupted.

    Never raises for Redis errors: the lock is then unknown (``lock_error``) and
    the journal's own host/PID decide.
    """
    record = journal.interrupted()
    if record is None:
        return None
    holder: dict[str, Any] | None = None
    ttl: float | None = None
    error: str | None = None
    if client is not None:
        lock = ClusterLock(client, cluster, 1)
        try:
            holder = lock.holder()
            if holder is not None:
                pttl = int(client.pttl(lock.key))
                ttl = pttl / 1000 if pttl > 0 else None
        except redis.RedisError as e:
            error = type(e).__name__
    if holder is not None and holder.get("swap_id") == record.get("swap_id"):
        running = _alive(holder)
    elif client is None or error is not None:
        running = _alive(record) and record.get("phase") == "running"
    else:
        running = False  # the lock is gone (or taken by another swap): nobody runs this one
    return UnfinishedSwap(record, running, holder, ttl, error)
