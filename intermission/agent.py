"""The Redis side of a process: a watcher thread and a heartbeat thread per gate.

* Watcher: subscribes to the scope's events channel, then re-reads the lease (so
  nothing published before the subscription is missed) and again every
  ``poll_interval`` (a missed message or a Redis restart converges).  It applies pauses
  with a local deadline computed from the Redis TTL on this host's monotonic clock, so
  a pause ends at its expiry here even if Redis is gone, and clock skew between hosts
  does not matter.
* Release rule: a paused process releases its held requests ONLY on (a) a resume for
  its pause token -- the ``resume`` event, or a ``resumed`` record carrying that token
  (a missed event) -- or (b) its local deadline.  A pause key that vanished (Redis
  restarted without persistence, a failover, a ``DEL``) ends nothing: the process keeps
  holding until its deadline, while the pauser re-asserts the lease (which refreshes
  the deadline) or resumes it.  A process that never saw a pause still fails open.
  A token that was resumed never pauses this process again (stale events, or a lease
  re-created after the resume record was lost).
* Heartbeat: writes this process's :class:`~intermission.protocol.ProcessInfo` with a
  TTL every ``heartbeat_interval``, and on changes the gate reports: at once, with an ack
  notification, when a pause is applied or the in-flight count reaches 0 while paused
  (what a drain wait waits for); batched, at most ``LAZY_BEAT_DELAY`` later, for other
  in-flight changes while paused (with an ack notification) and for status-only
  changes such as held counts or a resume (without one, and after the released
  requests have been handed to their threads / event loops).
* Redis unreachable: the gate fails open (after at most ``startup_wait`` on the very
  first requests of a process), a warning is logged at most every 30 s, and reconnects
  back off up to 2 s.  A pause already applied still ends at its deadline.

Fork safety: threads start lazily (first request, ASGI lifespan startup, or
:func:`intermission.start_all`), and an ``os.register_at_fork`` hook resets every agent
in a forked child, so gunicorn ``--preload`` works.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import secrets
import socket
import threading
import time
import weakref
from collections import deque
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from intermission import client
from intermission import protocol as p
from intermission.errors import ProtocolError
from intermission.state import ACK, PROGRESS, STATUS, Gate, Snapshot
from intermission.store import Store

log = logging.getLogger("intermission")

_AGENTS: weakref.WeakSet[Agent] = weakref.WeakSet()
WARN_EVERY = 30.0
# a change no drain wait is waiting for is written this long after it happened, batched
# with the changes that follow (bounds the heartbeat rate of a busy paused process)
LAZY_BEAT_DELAY = 0.02
ENDED_GRACE = 0.25


class Agent:
    """Connects one :class:`Gate` to Redis.  ``start()`` is idempotent and cheap."""

    def __init__(
        self,
        gate: Gate,
        *,
        scope: str,
        kind: str,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 1.0,
        connect_timeout: float = 0.5,
        startup_wait: float = 0.2,
    ) -> None:
        self.gate = gate
        self.scope = scope
        self.kind = kind
        self.redis_url = redis_url
        self._given_client = redis_client
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ttl = max(3.0, 3 * heartbeat_interval)
        self.connect_timeout = connect_timeout
        self.startup_wait = startup_wait
        self.started = False
        self.redis_ok = False
        self._start_lock = threading.Lock()
        self._last_warn = -WARN_EVERY
        self._ended: deque[str] = deque(maxlen=64)  # released here: resumed or expired
        self._resumed: deque[str] = deque(maxlen=64)  # released here by a resume
        self._missing: str | None = None  # paused token whose key we found gone (logged)
        self._stop = threading.Event()
        self._beat_now = threading.Event()  # the heartbeat is stale
        self._ack_now = threading.Event()  # ... and a drain wait needs it now
        self._level = STATUS  # highest Gate.notify level since the last heartbeat
        self._level_lock = threading.Lock()
        self._beat_lock = threading.Lock()  # one heartbeat write at a time (two threads)
        # changes the watcher made while handling a burst of events, written or handed to
        # the heartbeat thread once the burst is handled (see _flush_deferred); -1: none
        self._deferring = False
        self._deferred = -1
        self._watch_ident: int | None = None
        self.proc_id = ""
        self.beats = 0  # heartbeats written (host mode's fallback waits for the first)
        self.store: Store | None = None
        _AGENTS.add(self)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._start_lock:
            if self.started:
                return
            pid = os.getpid()
            host = re.sub(r"[^A-Za-z0-9_.\-]", "_", socket.gethostname())[:100] or "host"
            self.host, self.pid = host, pid
            self.proc_id = p.validate_proc_id(f"{host}:{pid}:{secrets.token_hex(3)}")
            self.started_at = time.time()
            self._stop = threading.Event()
            self._beat_now = threading.Event()
            self._ack_now = threading.Event()
            self._level_lock = threading.Lock()
            self._beat_lock = threading.Lock()
            self._deferring, self._deferred, self._watch_ident = False, -1, None
            self._level = STATUS
            self.gate.notify = self._changed
            self.store = Store(self._client(), self.scope)
            for target, name in ((self._watch, "watch"), (self._beat, "heartbeat")):
                threading.Thread(target=target, name=f"intermission-{name}", daemon=True).start()
            timer = threading.Timer(self.startup_wait, self._startup_deadline)
            timer.daemon = True
            timer.start()
            self.started = True

    @property
    def _io_timeout(self) -> float | None:
        """The longest a Redis command of ours can block (None: unbounded)."""
        if self.store is None:
            return None
        value = self.store.client.connection_pool.connection_kwargs.get("socket_timeout")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def _client(self) -> redis.Redis:
        if self._given_client is not None:
            return self._given_client
        if self.redis_url is None:  # pragma: no cover - options validation prevents it
            raise ValueError("either redis_url or redis is required")
        return client.connect(
            self.redis_url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=max(1.0, self.connect_timeout),
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),  # we retry ourselves, with backoff, off the hot path
        )

    def stop(self, deregister: bool = True) -> None:
        """Stop the threads and (best effort) remove this process's heartbeat."""
        if not self.started:
            return
        self._stop.set()
        self._beat_now.set()
        self.started = False
        if deregister and self.store is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self.store.remove_heartbeat(self.proc_id)

    def after_fork(self) -> None:
        """In a forked child: nothing of the parent's threads or requests exists here."""
        self._start_lock = threading.Lock()
        self.started = False
        self.redis_ok = False
        self.store = None
        self._missing = None
        self.gate.reset()

    # ------------------------------------------------------------ watcher

    def _watch(self) -> None:
        stop, gate, store = self._stop, self.gate, self.store
        if store is None:  # pragma: no cover
            return
        self._watch_ident = threading.get_ident()
        backoff = 0.1
        while not stop.is_set():
            pubsub = None
            try:
                pubsub = store.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(store.events)
                self._poll(store)
                self.redis_ok = True
                backoff = 0.1
                next_poll = time.monotonic() + self.poll_interval
                while not stop.is_set():
                    now = time.monotonic()
                    self._check_expiry(now)
                    if now >= next_poll:
                        self._poll(store)
                        next_poll = now + self.poll_interval
                    wait = min(next_poll, gate.deadline) - time.monotonic()
                    msg = pubsub.get_message(timeout=min(max(wait, 0.0), self.poll_interval))
                    self._deferring = msg is not None
                    try:
                        while msg is not None:
                            if msg.get("type") == "message":
                                self._on_event(msg["data"])
                            msg = pubsub.get_message(timeout=0.0)
                    finally:
                        self._deferring = False
                        self._flush_deferred()
            except (redis.RedisError, OSError) as exc:
                if stop.is_set():
                    break  # stopped while waiting on Redis: nothing to report
                self._unreachable(exc)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        pubsub.close()
            end = time.monotonic() + backoff
            while not stop.is_set():
                now = time.monotonic()
                self._check_expiry(now)
                if now >= end:
                    break
                stop.wait(max(0.001, min(end, gate.deadline) - now))
            backoff = min(backoff * 2, 2.0)

    def _poll(self, store: Store) -> None:
        try:
            state = store.read()
        except ProtocolError as exc:
            self._warn(f"intermission: unreadable pause key for scope {self.scope!r} ({exc}); "
                       "treating it as absent")
            self._apply_absent(None)
            return
        lease = state.lease
        if lease is not None and state.ttl_remaining:
            if lease.token in self._resumed:
                self.gate.mark_synced()
                return  # resumed already: a re-created lease of it must not re-pause us
            if lease.token in self._ended and state.ttl_remaining < ENDED_GRACE:
                return  # we just released it at its expiry; Redis is a few ms behind
            self._missing = None
            self.gate.apply_pause(lease.token, time.monotonic() + state.ttl_remaining)
        else:
            self._apply_absent(state.last_resume)

    def _apply_absent(self, last: p.ResumeRecord | None) -> None:
        """No (readable) lease in Redis.  Not paused: we are in sync (requests pass).
        Paused: release only if ``last`` is the resume of our token; otherwise the key
        was lost and we hold on until the local deadline (or a resume / re-assertion)."""
        gate = self.gate
        token = gate.token
        if token is None:
            gate.mark_synced()
            return
        if last is not None and last.token == token:
            self._resumed_here(token, last.payload)
            return
        if self._missing != token:
            self._missing = token
            left = max(0.0, gate.deadline - time.monotonic())
            log.warning("intermission: the key of pause %s of scope %r is gone from Redis "
                        "(restarted without persistence, a failover to a replica that lacked "
                        "it, or deleted) and it was not resumed; "
                        "still holding requests until the pauser re-asserts or resumes it, "
                        "at most until its local expiry in %.1fs", token, self.scope, left)

    def _resumed_here(self, token: str, payload: dict[str, Any] | None) -> None:
        self._ended.append(token)
        self._resumed.append(token)
        if self._missing == token:
            self._missing = None
        self.gate.apply_resume(token, payload)

    def _on_event(self, raw: bytes | str) -> None:
        try:
            event = p.Event.decode(raw)
        except ProtocolError as exc:
            log.debug("intermission: ignoring bad event: %s", exc)
            return
        if event.type == "resume":
            self._resumed_here(event.token, event.payload)
        elif event.token not in self._ended:  # a stale pause/renew must not re-pause
            if self._missing == event.token:
                self._missing = None
                log.warning("intermission: pause %s of scope %r was re-asserted; holding on",
                            event.token, self.scope)
            self.gate.apply_pause(event.token, time.monotonic() + event.ttl_ms / 1000)

    def _check_expiry(self, now: float) -> None:
        token = self.gate.expired_token(now)
        if token is not None:
            self._ended.append(token)
            self._missing = None
            log.warning("intermission: pause %s of scope %r reached its expiry; releasing",
                        token, self.scope)
            self.gate.apply_resume(token, None)

    def _startup_deadline(self) -> None:
        if not self.gate.synced:
            self._warn(f"intermission: no answer from Redis within {self.startup_wait}s; "
                       "requests pass (fail open) until it answers")
            self.gate.mark_synced()

    def _unreachable(self, exc: BaseException) -> None:
        self.redis_ok = False
        where = client.describe(self.redis_url) if self.redis_url else "the given Redis client"
        if self.gate.paused:
            what = ("requests stay held until a resume or the pause's local expiry in "
                    f"{max(0.0, self.gate.deadline - time.monotonic()):.1f}s")
        else:
            what = "requests pass (fail open)"
        self._warn(f"intermission: Redis unreachable at {where}: {exc}; {what}; "
                   "retrying in the background")
        self.gate.mark_synced()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warn >= WARN_EVERY:
            self._last_warn = now
            log.warning("%s", message)

    # ------------------------------------------------------------ heartbeat

    def _changed(self, level: int) -> None:
        """``Gate.notify``: the heartbeat is stale; ``level`` says how urgently."""
        with self._level_lock:
            self._level = max(self._level, level)
            if self._deferring and threading.get_ident() == self._watch_ident:
                self._deferred = max(self._deferred, level)
                return  # the watcher handles it after the burst (_flush_deferred)
        if level == ACK:
            self._ack_now.set()
        self._beat_now.set()

    def _beat(self) -> None:
        stop, beat_now, ack_now = self._stop, self._beat_now, self._ack_now
        periodic = True  # the first beat registers this process
        while not stop.is_set():
            if beat_now.is_set() and not ack_now.is_set():
                # nothing a drain wait needs at once: batch it (an ACK cuts the wait short)
                ack_now.wait(LAZY_BEAT_DELAY)
            self._write_beat(always=periodic)
            periodic = not beat_now.wait(self.heartbeat_interval)

    def _flush_deferred(self) -> None:
        """After a burst of events: a pause the watcher applied is acknowledged from the
        watcher itself, at once.  Waking the heartbeat thread for it is one more thread
        hand-off on the pauser's critical path (0.15-0.5 ms on the lab's VMs, up to the
        GIL switch interval when request threads are busy) -- and that thread, woken
        first, would write it before the watcher anyway.  Only while the pause's local
        deadline is further away than a stuck Redis call can take (3 socket timeouts: a
        reconnect, a Sentinel lookup, the command): this thread releases the held
        requests at that deadline and must not be late for it.  Any other change is
        handed to the heartbeat thread as :meth:`_changed` would have."""
        with self._level_lock:
            level, self._deferred = self._deferred, -1
        if level < 0:
            return
        timeout = self._io_timeout
        if (level == ACK and timeout is not None
                and self.gate.deadline - time.monotonic() > 3 * timeout):
            self._write_beat(always=True)
            return
        if level == ACK:
            self._ack_now.set()
        self._beat_now.set()

    def _write_beat(self, *, always: bool) -> None:
        """Write the gate's state now.  Both threads write (see :meth:`_flush_deferred`),
        one at a time and each from a snapshot taken under that lock, so a later write
        never carries an older state.  ``always=False``: only if a change is still
        unwritten (the other thread may have written it meanwhile)."""
        store, gate = self.store, self.gate
        if store is None:  # pragma: no cover
            return
        with self._beat_lock:
            if not always and not self._beat_now.is_set():
                return
            # clear before reading, so a change from now on triggers one more beat
            self._beat_now.clear()
            self._ack_now.clear()
            with self._level_lock:
                level, self._level = self._level, STATUS
            snap = gate.snapshot()
            # the watcher reports unreachability; heartbeats just resume later
            with contextlib.suppress(redis.RedisError, OSError):
                store.heartbeat(self._info(snap), self.heartbeat_ttl, notify=level >= PROGRESS)
                self.beats += 1
            gate.exporter.sync(held=snap.held, in_flight=snap.in_flight,
                               paused=snap.paused, stats=snap.metrics)

    def _info(self, snap: Snapshot) -> p.ProcessInfo:
        return p.ProcessInfo(
            id=self.proc_id, host=self.host, pid=self.pid, kind=self.kind,
            started_at=self.started_at, updated_at=time.time(),
            in_flight=snap.in_flight, held=snap.held, paused=snap.paused,
            acked_token=snap.acked_token, redis_ok=self.redis_ok,
            metrics=snap.metrics, hold_buckets=snap.hold_buckets,
        )


def start_all() -> None:
    """Start every intermission agent of this process now (e.g. from gunicorn's
    ``post_worker_init``), so idle workers register and acknowledge pauses too."""
    for agent in list(_AGENTS):
        agent.start()
    from intermission import hostlink  # host-mode processes (it never imports this module)

    hostlink.start_all()


def _after_fork_in_child() -> None:
    for agent in list(_AGENTS):
        agent.after_fork()


def _at_exit() -> None:
    for agent in list(_AGENTS):
        agent.stop()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
