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

from roleswap.coord.journal import UNFINISHED, Journal
from roleswap.coord.lock import ClusterLock, parse_holder

__all__ = ["StaleLock", "UnfinishedSwap", "stale_lock", "unfinished_swap"]


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


GONE = "gone"  # StaleLock.phase of a lock whose swap is not the journal's newest


@dataclass(frozen=True)
class StaleLock:
    """The cluster lock held by a swap that has FINISHED: a Redis that lost writes (a
    failover to a replica that missed the release, a restart) brought it back.  Nobody
    refreshes it; it blocks every swap until its TTL runs out."""

    raw: str  # the lock's exact value (release compares it)
    swap_id: str
    phase: str  # the finished swap's journal phase (done, rolled_back, ...)
    ttl_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"swap_id": self.swap_id, "phase": self.phase, "lock_ttl_s": self.ttl_s}

    def describe(self) -> str:
        left = f", expires in {self.ttl_s:.0f}s" if self.ttl_s else ""
        if self.phase == GONE:
            return (f"the cluster lock is held by swap {self.swap_id}, an earlier swap whose "
                    f"process on this host is gone{left}: Redis brought it back (a failover "
                    "or restart)")
        return (f"the cluster lock is held by swap {self.swap_id}, which has finished (journal "
                f"phase {self.phase}){left}: Redis lost its release (a failover or restart)")


def stale_lock(journal: Journal, client: redis.Redis, cluster: str) -> StaleLock | None:
    """The lock if its holder's swap is the newest journal record and that record is
    finished (see :class:`StaleLock`), else None.  A lock held by any other swap id is
    never called stale: a new swap takes the lock before its journal names it.  Raises
    redis.RedisError."""
    lock = ClusterLock(client, cluster, 1)
    raw = client.get(lock.key)
    if raw is None:
        return None
    holder = parse_holder(raw) or {}
    record = journal.load()
    if not holder.get("swap_id"):
        return None
    if record is not None and holder.get("swap_id") == record.get("swap_id"):
        if record.get("phase") in UNFINISHED:
            return None  # running, or interrupted: recover's to finish
        phase = str(record.get("phase"))
    elif holder.get("host") == socket.gethostname() and not _pid_is_roleswap(holder.get("pid")):
        phase = GONE  # an older swap's lock, brought back
    else:
        return None
    pttl = int(client.pttl(lock.key))
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return StaleLock(text, str(holder.get("swap_id")), phase, pttl / 1000 if pttl > 0 else None)


def release_stale(client: redis.Redis, cluster: str, stale: StaleLock) -> bool:
    """Delete the stale lock if it still has the value read (compare-and-delete)."""
    lock = ClusterLock(client, cluster, 1)
    lock.adopt(stale.raw)
    return lock.release()
