"""Waiting until every app process has acknowledged a pause and has 0 requests in flight.

Processes publish their id on the scope's acks channel when they acknowledge a pause or
their in-flight count changes while paused (see :mod:`intermission.agent`).  The wait:

* subscribes to that channel BEFORE the pause is set when it can
  (:func:`open_acks`, called by ``Controller.pause``), so no connection setup happens
  inside the pause window, and in any case before its first read, so no ack is missed;
* starts from a full read (the lease, the live-process index and every heartbeat in one
  MULTI: one round trip once the ids are known), then on each wake-up re-reads only the
  heartbeats of the processes that acked since the last read, pipelined with the lease
  (one round trip, O(acks) instead of O(processes)) -- unless the burst holds every
  process still pending: then the verifying full read comes at once;
* re-reads everything every ``POLL`` seconds (a missed message, a process that died
  or appeared), and before answering "drained": that verdict always comes from one
  full, consistent read, never from a view merged over time.

Redis errors are retried until the timeout, never raised.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from intermission import protocol as p
from intermission.errors import ProtocolError
from intermission.store import Store

POLL = 0.1  # full re-read at least this often (seconds)
NOT_ACTIVE = "the pause is no longer active (expired, resumed or replaced)"


@dataclass(frozen=True)
class DrainReport:
    """Result of :meth:`PauseHandle.wait_drained`.  ``pending`` lists every live process
    that has not acknowledged the pause or still has requests in flight, with why."""

    token: str
    drained: bool
    elapsed: float
    processes: list[p.ProcessInfo]
    pending: list[tuple[p.ProcessInfo, str]]
    error: str | None = None
    # requests still running when the processes acknowledged the pause (what the drain
    # then waited for: the apps' own time, not intermission's)
    in_flight_at_ack: int = 0

    def __str__(self) -> str:
        head = "drained" if self.drained else "NOT drained"
        waited = (f", {self.in_flight_at_ack} request(s) were running at the pause"
                  if self.in_flight_at_ack else "")
        lines = [f"{head} after {self.elapsed * 1000:.1f} ms: "
                 f"{len(self.processes)} live process(es), {len(self.pending)} pending{waited}"]
        lines += [f"  {info.id} (pid {info.pid}): {why}" for info, why in self.pending]
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "token": self.token, "drained": self.drained, "elapsed": round(self.elapsed, 6),
            "processes": [asdict(i) for i in self.processes],
            "pending": [{"id": i.id, "pid": i.pid, "host": i.host, "why": why}
                        for i, why in self.pending],
            "error": self.error, "in_flight_at_ack": self.in_flight_at_ack,
        }


def pending_for(token: str, processes: list[p.ProcessInfo]) -> list[tuple[p.ProcessInfo, str]]:
    out = []
    for info in processes:
        if info.acked_token != token:
            why = "has not acknowledged the pause"
            if not info.redis_ok:
                why += " (it reports Redis unreachable)"
            out.append((info, why))
        elif info.in_flight > 0:
            out.append((info, f"{info.in_flight} request(s) still in flight"))
    return out


def open_acks(client: redis.Redis, channel: str) -> Any:
    """A pub/sub connection subscribed to ``channel``, the subscription confirmed by Redis
    (so every ack published from now on reaches it); None if Redis refused (the wait then
    subscribes itself, or polls)."""
    pubsub = client.pubsub(ignore_subscribe_messages=False)
    try:
        pubsub.subscribe(channel)
        msg = pubsub.get_message(timeout=2.0)  # the confirmation comes before any message
        if msg is None or msg.get("type") != "subscribe":
            raise redis.ConnectionError(f"no subscription confirmation: {msg!r}")
    except (redis.RedisError, OSError):
        close_acks(pubsub)
        return None
    return pubsub


def close_acks(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            pubsub.close()


def wait_drained(store: Store, token: str, timeout: float, *,
                 in_force: Callable[[], bool] | None = None, acks: Any = None) -> DrainReport:
    """See :meth:`intermission.controller.Controller.wait_drained`.  ``acks``: a
    subscription from :func:`open_acks` to use (it stays open; the caller closes it)."""
    own = acks is None
    if own:
        acks = open_acks(store.client, store.acks)
    try:
        return _Wait(store, token, in_force).run(acks, timeout)
    finally:
        if own:
            close_acks(acks)


class _Wait:
    def __init__(self, store: Store, token: str,
                 in_force: Callable[[], bool] | None) -> None:
        self.store = store
        self.token = token
        self.in_force = in_force
        self.view: dict[str, p.ProcessInfo] = {}  # id -> latest heartbeat read
        self.at_ack: dict[str, int] = {}  # id -> in flight in its first acknowledging heartbeat

    def run(self, acks: Any, timeout: float) -> DrainReport:
        start = time.monotonic()
        deadline = start + timeout
        full = True  # the next read re-reads everything
        acked: set[str] = set()
        next_full = start
        while True:
            now = time.monotonic()
            full = full or now >= next_full
            try:
                error = self._read_full() if full else self._read_acked(acked)
            except (redis.RedisError, OSError, ProtocolError) as exc:
                error = f"Redis: {exc}"
            if full:
                next_full = now + POLL
            procs = sorted(self.view.values(), key=lambda i: (i.host, i.pid, i.id))
            for info in procs:
                if info.acked_token == self.token and info.id not in self.at_ack:
                    self.at_ack[info.id] = info.in_flight
            pending = pending_for(self.token, procs)
            now = time.monotonic()
            done = not pending and error is None
            if (done or now >= deadline) and not full and error is None:
                full = True  # answer only from one consistent read of every process
                continue
            if done or (error is not None and error.startswith("the pause")) or now >= deadline:
                return DrainReport(self.token, done, now - start, procs, pending, error,
                                   sum(self.at_ack.values()))
            got = _wait_acks(acks, min(POLL, deadline - now, max(0.0, next_full - now)))
            acked = got or set()
            # every process still pending acked in this burst: go straight to the verifying
            # full read (one round trip) rather than re-read them and then everything
            covered = bool(acked) and all(info.id in acked for info, _ in pending)
            full = got is None or error is not None or covered

    def _read_full(self) -> str | None:
        # guesses the ids the store saw in the index last (Controller.open_acks reads them
        # before the pause): one round trip instead of two inside the window
        state, procs = self.store.read_all()
        self.view = {i.id: i for i in procs}
        return self._lease_error(state)

    def _read_acked(self, ids: set[str]) -> str | None:
        order = sorted(ids)
        state, infos = self.store.read_with(order)
        for proc_id, info in zip(order, infos, strict=True):
            if info is None:
                self.view.pop(proc_id, None)  # its heartbeat is gone: not live any more
            else:
                self.view[proc_id] = info
        return self._lease_error(state)

    def _lease_error(self, state: Any) -> str | None:
        """None while the pause is ours; a missing key is still ours while ``in_force()``
        says the pause holds (the key was lost, e.g. Redis restarted) and it was not
        resumed."""
        lost_key = (state.lease is None and self.in_force is not None and self.in_force()
                    and (state.last_resume is None or state.last_resume.token != self.token))
        if not lost_key and (state.lease is None or state.lease.token != self.token):
            return NOT_ACTIVE
        return None


def _wait_acks(pubsub: Any, timeout: float) -> set[str] | None:
    """Ids that acked within ``timeout`` (a whole burst; empty: none); None when they are
    unknown (no subscription, a Redis error, a malformed message): read everything."""
    if pubsub is None:
        time.sleep(min(timeout, 0.02))
        return None
    ids: set[str] = set()
    try:
        msg = pubsub.get_message(timeout=timeout)
        while msg is not None:  # swallow the burst, then re-read once
            if msg.get("type") == "message":
                data = msg["data"]
                proc_id = data.decode() if isinstance(data, bytes) else str(data)
                p.validate_proc_id(proc_id)
                ids.add(proc_id)
            msg = pubsub.get_message(timeout=0.0)
    except (redis.RedisError, OSError, ValueError):
        time.sleep(min(timeout, 0.02))
        return None
    return ids
