"""The swap journal: every step's start, end and result, written before and after it runs.

Kept in Redis (so another host can recover) and mirrored to a local file (so a
Redis outage does not lose it).  Each write bumps ``seq``; :meth:`Journal.load`
returns whichever copy is newer.  The file is append-only JSON lines, one full
record per write (an append costs ~20 µs where rewrite-and-rename cost ~0.4 ms,
which matters inside the pause window); the last complete line wins, so a torn
final line after a crash is simply ignored.  The Redis copy is sent without waiting for
its reply (read with the next write; see ``_send``): no step waits on that round trip.
The record is plain JSON:

    {"swap_id", "cluster", "from", "to", "mode", "phase", "seq", "started_at",
     "host", "pid", "plan": [names], "steps": [{"name", "status", "ms", "error"}],
     "state": {captured positions, pause token, lock token, previous endpoint ...}}

``phase`` is one of: running, done, rolled_back, failed (after the point of no
return; `roleswap recover` finishes it), recovering.  A journal whose phase is
running/failed/recovering is an *interrupted swap*.

Lost writes: a Redis failover (replication is asynchronous: the new master may lack the
last writes) or a restart without persistence can drop journal writes that roleswap saw
succeed.  :meth:`Journal.load` then finds the local file *ahead* of Redis (same swap with
a higher ``seq``, a later swap, or no journal in Redis at all) and says so in
:attr:`Journal.redis_behind` (it still returns the newer copy); :meth:`Journal.resync`
writes the local copy back to Redis.  Only the host that ran the swap has the file, so
only there can this be noticed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

import redis

from roleswap.coord.keys import journal_key

UNFINISHED = ("running", "failed", "recovering")


class Journal:
    def __init__(self, client: redis.Redis | None, cluster: str, directory: Path) -> None:
        self.client = client
        self.cluster = cluster
        self.path = directory / f"roleswap-{cluster}.journal.jsonl"
        self.record: dict[str, Any] = {}
        self._redis_error: str | None = None
        # set by load(): how Redis's copy is behind the local file (Redis lost writes)
        self.redis_behind: str | None = None
        self._file: IO[str] | None = None
        # the Redis copy's write whose reply is not read yet (see _send): the pool, the
        # connection borrowed from it, and the data it carried
        self._pending: tuple[Any, Any, str] | None = None

    # -- writing ------------------------------------------------------------------
    def begin(self, swap_id: str, source: str, target: str, mode: str, plan: list[str],
              options: dict[str, Any]) -> None:
        self.record = {
            "swap_id": swap_id, "cluster": self.cluster, "from": source, "to": target,
            "mode": mode, "phase": "running", "seq": 0, "started_at": time.time(),
            "host": socket.gethostname(), "pid": os.getpid(), "plan": plan, "steps": [],
            # facts gathered by preflight (mode, siblings) are kept
            "state": dict(self.record.get("state", {})), "options": options,
        }
        self._open(truncate=True)
        self._write()

    def adopt(self, record: dict[str, Any]) -> None:
        """Continue an existing journal (recovery)."""
        self.record = record
        self._open(truncate=False)

    def step(self, name: str, status: str, ms: float | None = None, error: str | None = None) -> None:
        self.steps([(name, status, ms, error)])

    def steps(self, entries: list[tuple[str, str, float | None, str | None]]) -> None:
        """Record several step entries (name, status, ms, error) in ONE write: the runner
        records a step's end and the next step's start together, as nothing happens
        between them (each write is a Redis round trip inside the pause window)."""
        now = time.time()
        for name, status, ms, error in entries:
            entry: dict[str, Any] = {"name": name, "status": status, "at": now}
            if ms is not None:
                entry["ms"] = round(ms, 3)
            if error:
                entry["error"] = error
            self.record["steps"].append(entry)
        self._write()

    def withdraw(self, name: str) -> None:
        """Forget the last entry if it is ``name`` still "running" and nothing of it ran
        (a step journaled ahead whose turn never came).  Written with the next write."""
        steps = self.record.get("steps", [])
        if steps and steps[-1]["name"] == name and steps[-1]["status"] == "running":
            steps.pop()

    def stage(self, **values: Any) -> None:
        """Set state written with the next journal write (the step's end record): for
        facts that need no write of their own because that write follows at once."""
        self.record["state"].update(values)

    def set_state(self, **values: Any) -> None:
        self.record["state"].update(values)
        self._write()

    def rewrite(self) -> None:
        """Write the whole record again (to a Redis that lost it: a failover).  A Redis
        error is left in :attr:`redis_error`, as for every write."""
        self._write()

    def set_phase(self, phase: str) -> None:
        self.record["phase"] = phase
        self._write()

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.record.get("state", {})
        return state

    def last_status(self) -> dict[str, str]:
        """Each step's latest status (running/done/failed/undone/skipped)."""
        out: dict[str, str] = {}
        for entry in self.record.get("steps", []):
            out[entry["name"]] = entry["status"]
        return out

    def _open(self, truncate: bool) -> IO[str]:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._file = os.fdopen(os.open(self.path, flags, 0o600), "a")
        return self._file

    def close(self) -> None:
        self._settle()
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def redis_error(self) -> str | None:
        """Why the last write to Redis failed (the exception's class name), or None."""
        self._settle()
        return self._redis_error

    def _write(self) -> None:
        self.record["seq"] = int(self.record.get("seq", 0)) + 1
        data = json.dumps(self.record, default=str)
        # The file first: it cannot be unreachable.  flush() hands it to the kernel,
        # which is what survives a SIGKILL of this process.
        f = self._file or self._open(truncate=False)
        f.write(data + "\n")
        f.flush()
        if self.client is not None:
            self._send(data)

    # -- the Redis copy: sent now, its reply read with the next write ----------------
    # Each write is the whole record and the local file has it first, so no step waits
    # on Redis's reply: a write inside the pause window costs the send, not a round trip
    # (5 of them, 0.1-0.8 ms each by the machine, were a third of the runner's own time
    # there).  The write borrows a connection from the client's pool and gives it back
    # once its reply is read: before the next write, before any read of the journal, and
    # by `redis_error`; so the pool's own rules (a Sentinel pool drops a connection to a
    # demoted master) apply as for every other command.  A write whose send or reply
    # failed is written again the plain way at once (the client's retries, as before),
    # so a Redis restart or failover costs no more than it did.  The bytes sent reach
    # Redis even if this process is killed right after (the kernel delivers a dead
    # process's sent data before its FIN).
    def _send(self, data: str) -> None:
        self._settle()
        pool = getattr(self.client, "connection_pool", None)
        if pool is None or not hasattr(pool, "get_connection"):  # tests' stand-ins
            self._set_now(data)
            return
        conn = None
        try:
            conn = pool.get_connection()
            conn.send_command("SET", journal_key(self.cluster), data)
        except Exception:  # any failure: write it the plain way (see _settle)
            if conn is not None:
                self._give_back(pool, conn, broken=True)
            self._set_now(data)
            return
        self._pending = (pool, conn, data)

    def _settle(self) -> None:
        if self._pending is None:
            return
        (pool, conn, data), self._pending = self._pending, None
        try:
            conn.read_response()
        except Exception:  # any failure: write it again the plain way
            # (a connection the pool dropped under us -- drop_connections after a Sentinel
            # failover -- fails in redis-py with AttributeError, not a RedisError)
            self._give_back(pool, conn, broken=True)
            self._set_now(data)
            return
        self._give_back(pool, conn, broken=False)
        self._redis_error = None

    @staticmethod
    def _give_back(pool: Any, conn: Any, *, broken: bool) -> None:
        with contextlib.suppress(Exception):  # a pool that was reset or closed meanwhile
            if broken:
                conn.disconnect()  # its next user connects afresh
            pool.release(conn)

    def _set_now(self, data: str) -> None:
        if self.client is None:
            return
        try:
            self.client.set(journal_key(self.cluster), data)
            self._redis_error = None
        except redis.RedisError as e:
            self._redis_error = type(e).__name__

    # -- reading ------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        """The newest journal (Redis or file), or None if there has never been a swap.
        Sets :attr:`redis_behind` when Redis answered and its copy is older than the
        file's (see the module docstring)."""
        self.redis_behind = None
        in_redis: dict[str, Any] | None = None
        redis_read = False
        self._settle()  # our last write first: this read may travel on another connection
        if self.client is not None:
            try:
                raw = self.client.get(journal_key(self.cluster))
                redis_read = True
                if raw is not None:
                    in_redis = json.loads(raw)
            except (redis.RedisError, ValueError):
                pass
        in_file: dict[str, Any] | None = None
        with contextlib.suppress(OSError):
            for line in reversed(self.path.read_text().splitlines()):
                try:
                    in_file = json.loads(line)
                    break
                except ValueError:
                    continue  # a torn last line from a crash mid-write
        candidates = [c for c in (in_redis, in_file) if isinstance(c, dict) and c.get("swap_id")]
        if not candidates:
            return None
        if redis_read and in_file in candidates:
            self.redis_behind = behind(in_redis if in_redis in candidates else None, in_file)
        return max(candidates, key=_newness)

    def resync(self) -> bool:
        """Write the local copy back to Redis if Redis's is behind (see :meth:`load`);
        True if it was written.  Raises redis.RedisError if Redis fails."""
        record = self.load()
        if self.redis_behind is None or self.client is None or record is None:
            return False
        self.client.set(journal_key(self.cluster), json.dumps(record, default=str))
        self.redis_behind = None
        return True

    def interrupted(self) -> dict[str, Any] | None:
        record = self.load()
        if record and record.get("phase") in UNFINISHED:
            return record
        return None


def _newness(record: dict[str, Any]) -> tuple[float, int]:
    # Same swap in both: the higher seq is newer.  Different swaps: the later start.
    return (float(record.get("started_at", 0) or 0), int(record.get("seq", 0) or 0))


def _label(record: dict[str, Any]) -> str:
    return (f"swap {record.get('swap_id')} at seq {record.get('seq')} "
            f"(phase {record.get('phase')})")


def behind(in_redis: dict[str, Any] | None, in_file: dict[str, Any] | None) -> str | None:
    """How Redis's journal copy is older than the local file's, or None if it is not."""
    if in_file is None:
        return None
    if in_redis is None:
        return f"Redis holds no journal, the local file has {_label(in_file)}"
    if _newness(in_redis) < _newness(in_file):
        return f"Redis has {_label(in_redis)}, the local file {_label(in_file)}"
    return None
