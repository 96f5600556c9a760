"""The per-process gate: a local flag on the hot path, and the queue of held requests.

Nothing here talks to Redis.  :class:`intermission.agent.Agent` feeds the gate with
pause/resume decisions from a watcher thread; the middlewares call :meth:`Gate.enter`
(fast path) and the ``hold_*`` methods (slow path).

Invariants (all under ``Gate.lock``):

* ``open`` is True only when synced, not paused and no backlog is being released; a
  request that sees ``open`` increments ``in_flight`` in the same critical section, so a
  pause applied concurrently either holds the request or counts it as in flight -- the
  drain wait can never miss a request that slipped through.
* held requests leave the queue in arrival order (FIFO).  Thread waiters are released
  as a chain (each released thread wakes the next after it has counted itself in
  flight), asyncio waiters in one batch per event loop; with pacing, a pacer thread
  releases them at ``release_rate`` per second and/or ``release_concurrency`` at a time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from intermission.metrics import Exporter, HoldStats

log = logging.getLogger("intermission")

HELD, RELEASED, TIMED_OUT, CANCELLED = 0, 1, 2, 3
# What a change means to a drain wait (the argument of ``Gate.notify``):
#   STATUS    counts only ``intermission status`` shows (held, resumed, timed out);
#   PROGRESS  the in-flight count fell while paused but is not 0 yet;
#   ACK       a new pause applied, or the in-flight count reached 0 while paused: what a
#             drain wait is waiting for.
STATUS, PROGRESS, ACK = 0, 1, 2
Hook = Callable[..., Any]


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a gate's counters, for the heartbeat."""

    in_flight: int
    held: int
    paused: bool
    acked_token: str | None
    metrics: dict[str, float]
    hold_buckets: list[list[float]]


class Waiter:
    """One held request."""

    __slots__ = ("arrival", "chained", "event", "future", "loop", "paced", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.arrival = time.monotonic()
        self.state = HELD
        self.paced = False
        self.chained = False
        self.loop = loop
        self.event: threading.Event | None = None if loop else threading.Event()
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:  # in arrival order: the loop then runs the tasks in this order
        if not fut.done():
            fut.set_result(None)


class Gate:
    """Admission state of one middleware in one process (see module docstring)."""

    def __init__(
        self,
        scope: str,
        *,
        max_hold: float,
        release_rate: float | None = None,
        release_concurrency: int | None = None,
        on_pause: Hook | None = None,
        on_resume: Hook | None = None,
        hook_timeout: float = 5.0,
    ) -> None:
        self.scope = scope
        self.max_hold = max_hold
        self.release_rate = release_rate
        self.release_concurrency = release_concurrency
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.hook_timeout = hook_timeout
        self.exporter = Exporter(scope)
        # called (outside the lock) with STATUS/PROGRESS/ACK when the heartbeat is stale
        self.notify: Callable[[int], None] = lambda level: None
        self.reset()

    def reset(self) -> None:
        """Fresh state (construction, and in a forked child: parent waiters don't exist)."""
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.open = False
        self.synced = False
        self.paused = False
        self.token: str | None = None
        self.deadline = math.inf  # monotonic time at which the current pause ends here
        self.acked_token: str | None = None
        self.in_flight = 0
        self.held = 0
        self.draining = False
        self.released_active = 0
        self.pacer_running = False
        self.waiters: deque[Waiter] = deque()
        self.stats = HoldStats()
        # host mode (intermission.hostlink.HostLink): the host agent's page decides, and
        # every count change is published there (all under the lock)
        self.shared: Any = None

    # ------------------------------------------------------------ request side

    def enter(self) -> bool:
        """Fast path: True (and counted in flight) if the request may pass now."""
        with self.lock:
            if self.open:
                self.in_flight += 1
                if self.shared is None or self.shared.admit(self):
                    return True
        return False

    def recheck(self, paced: bool) -> bool:
        """Host mode, for a request just released (counted in flight): True if it may run;
        False if the host paused again meanwhile (it is taken back out: hold it again)."""
        with self.lock:
            shared = self.shared
            if shared is None or shared.admit(self):
                return True
            if paced:
                self.released_active -= 1
                self.cond.notify_all()
        return False

    def leave(self, paced: bool = False) -> None:
        """A request that passed the gate has finished."""
        with self.lock:
            self.in_flight -= 1
            if self.shared is not None:
                self.shared.left(self)
            paused = self.paused
            drained = paused and self.in_flight == 0
            if paced:
                self.released_active -= 1
                self.cond.notify_all()
        if paused:  # a drain wait hears of the last request at once, of the others batched
            self.notify(ACK if drained else PROGRESS)

    def leave_paced(self) -> None:
        """A request released by the pacer has finished."""
        self.leave(True)

    def _admit_or_enqueue(self, w: Waiter) -> bool:
        """True if ``w`` is admitted at once (counted in flight); otherwise it is queued."""
        with self.lock:
            if self.open:
                self.in_flight += 1
                if self.shared is None or self.shared.admit(self):
                    w.state = RELEASED
                    return True
            self._enqueue(w)
        self.notify(STATUS)  # status shows the held count (the heartbeat batches bursts)
        return False

    def hold_thread(self) -> Waiter:
        """Block the calling thread until released or ``max_hold``; see ``Waiter.state``."""
        w = Waiter()
        if self._admit_or_enqueue(w):
            return w
        event = w.event
        if event is None:  # pragma: no cover - thread waiters always have one
            raise RuntimeError("thread waiter without an event")
        if not event.wait(self.max_hold):
            with self.lock:
                if w.state == HELD:
                    self._give_up(w, TIMED_OUT)
            self.notify(STATUS)
        if w.state == RELEASED and w.chained:
            self._wake_next_chained()
        return w

    async def hold_async(self) -> Waiter:
        """Await release or ``max_hold`` without blocking the loop or any thread."""
        loop = asyncio.get_running_loop()
        w = Waiter(loop)
        if self._admit_or_enqueue(w):
            return w
        fut = w.future
        if fut is None:  # pragma: no cover - asyncio waiters always have one
            raise RuntimeError("asyncio waiter without a future")
        timer = loop.call_later(self.max_hold, self._async_timeout, w)
        try:
            await fut
        except asyncio.CancelledError:  # client went away / server shutting down
            with self.lock:
                if w.state == HELD:
                    self._give_up(w, CANCELLED)
                elif w.state == RELEASED:
                    self.in_flight -= 1
                    if self.shared is not None:
                        self.shared.left(self)
                    if w.paced:
                        self.released_active -= 1
                        self.cond.notify_all()
            raise
        finally:
            timer.cancel()
        return w

    def _async_timeout(self, w: Waiter) -> None:
        with self.lock:
            if w.state != HELD:
                return  # released meanwhile; the release callback resolves the future
            self._give_up(w, TIMED_OUT)
        self.notify(STATUS)
        if w.future is not None and not w.future.done():
            w.future.set_result(None)

    def retry_after(self) -> int:
        """Seconds a 503'd client should wait: the rest of the pause, within [1, 30]."""
        with self.lock:
            left = self.deadline - time.monotonic() if self.paused else 1.0
        return int(min(30, max(1, math.ceil(left))))

    # ------------------------------------------------------------ internals (lock held)

    def _enqueue(self, w: Waiter) -> None:
        self.waiters.append(w)
        self.held += 1
        self.stats.held_total += 1
        if self.shared is not None:
            self.shared.publish(self)

    def _give_up(self, w: Waiter, state: int) -> None:
        # the waiter stays in the deque; releasers skip anything not HELD
        w.state = state
        self.held -= 1
        if state == TIMED_OUT:
            self.stats.timed_out_total += 1
        if self.shared is not None:
            self.shared.publish(self)

    def _pop_held(self) -> Waiter | None:
        while self.waiters:
            w = self.waiters.popleft()
            if w.state == HELD:
                return w
        return None

    def _release(self, w: Waiter, now: float) -> float:
        w.state = RELEASED
        self.held -= 1
        self.in_flight += 1
        if self.shared is not None:
            self.shared.publish(self)
        held_for = now - w.arrival
        self.stats.observe(held_for)
        return held_for

    def _update_open(self) -> None:
        self.open = self.synced and not self.paused and not self.draining

    def _begin_release(self) -> list[Waiter]:
        """Start releasing the backlog; returns waiters to wake outside the lock."""
        if not self.waiters:
            self.draining = False
            self._update_open()
            return []
        self.draining = True
        self._update_open()
        if self.release_rate or self.release_concurrency:
            if not self.pacer_running:
                self.pacer_running = True
                threading.Thread(target=self._pacer, name="intermission-pacer",
                                 daemon=True).start()
            else:
                self.cond.notify_all()
            return []
        now = time.monotonic()
        if self.waiters[0].loop is None:
            # threads: release the first; each released thread wakes the next (FIFO)
            w = self._pop_held()
            if w is None:
                self.draining = False
                self._update_open()
                return []
            w.chained = True
            self._release(w, now)
            return [w]
        out = []
        while (w := self._pop_held()) is not None:
            self._release(w, now)
            out.append(w)
        self.draining = False
        self._update_open()
        return out

    # ------------------------------------------------------------ internals (no lock)

    def _wake(self, waiters: list[Waiter]) -> None:
        now = time.monotonic()
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for w in waiters:
            if w.event is not None:
                w.event.set()
            elif w.loop is not None and w.future is not None:
                by_loop.setdefault(w.loop, []).append(w.future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:  # loop closed: those requests are gone
                log.debug("intermission: event loop closed; dropped %d held", len(futures))
        # metrics after every request is on its way: with thousands released at once,
        # prometheus-client's locks (µs per observation) must not delay the first one
        self.exporter.observe_holds([now - w.arrival for w in waiters])

    def _wake_next_chained(self) -> None:
        with self.lock:
            if self.paused:
                self.draining = False
                return  # the rest stays held for the new pause
            w = self._pop_held()
            if w is None:
                self.draining = False
                self._update_open()
                return
            w.chained = True
            self._release(w, time.monotonic())
        self._wake([w])

    def _pacer(self) -> None:
        interval = 1.0 / self.release_rate if self.release_rate else 0.0
        limit = self.release_concurrency
        next_at = 0.0
        while True:
            with self.cond:
                while True:
                    if self.paused:
                        self.draining = False
                        self.pacer_running = False
                        return
                    if not any(w.state == HELD for w in self.waiters):
                        self.waiters.clear()
                        self.draining = False
                        self._update_open()
                        self.pacer_running = False
                        return
                    if limit and self.released_active >= limit:
                        self.cond.wait(0.1)
                        continue
                    now = time.monotonic()
                    if now < next_at:
                        self.cond.wait(next_at - now)
                        continue
                    w = self._pop_held()
                    if w is None:
                        continue
                    w.paced = True
                    self.released_active += 1
                    self._release(w, now)
                    next_at = now + interval
                    break
            self._wake([w])

    # ------------------------------------------------------------ control side

    def apply_pause(self, token: str, deadline: float) -> None:
        """Hold new requests for pause ``token`` until ``deadline`` (monotonic), ack it."""
        with self.lock:
            first = not self.paused
            changed = self.token != token
            self.synced = True
            self.paused = True
            self.token = token
            self.deadline = deadline
            self._update_open()
            self._pause_applied(token, deadline)
        self._pause_published()
        if first and self.on_pause is not None:
            self.run_hook("on_pause", self.on_pause)
        if changed:
            with self.lock:
                self.acked_token = token
            self.notify(ACK)

    def apply_resume(self, token: str | None, payload: dict[str, Any] | None) -> bool:
        """End pause ``token`` (None: whichever is applied): hook first, then release."""
        with self.lock:
            if not self.paused or (token is not None and token != self.token):
                return False
            current = self.token
        if self.on_resume is not None:
            self.run_hook("on_resume", self.on_resume, payload)
        with self.lock:
            if not self.paused or self.token != current:
                return False
            self.paused = False
            self.token = None
            self.deadline = math.inf
            self._resume_applied(payload)
            wake = self._begin_release()
        self._resume_published()
        self._wake(wake)
        self.notify(STATUS)  # batched: the released requests run before the heartbeat write
        return True

    # what a gate whose state others read does when it changes (intermission.hostagent):
    # publish it (the lock held), then make it visible (after the lock)
    def _pause_applied(self, token: str, deadline: float) -> None:
        pass

    def _pause_published(self) -> None:
        pass

    def _resume_applied(self, payload: dict[str, Any] | None) -> None:
        pass

    def _resume_published(self) -> None:
        pass

    def mark_synced(self) -> None:
        """Redis told us the current state (or we gave up waiting: fail open)."""
        with self.lock:
            if self.synced:
                return
            self.synced = True
            wake = self._begin_release() if not self.paused else []
        self._wake(wake)

    def expired_token(self, now: float) -> str | None:
        with self.lock:
            return self.token if self.paused and now >= self.deadline else None

    def snapshot(self) -> Snapshot:
        with self.lock:
            return Snapshot(self.in_flight, self.held, self.paused, self.acked_token,
                            self.stats.as_dict(), self.stats.bucket_pairs())

    def run_hook(self, name: str, fn: Hook, *args: Any) -> None:
        """Run a hook in a helper thread, waiting at most ``hook_timeout``: a stuck hook
        must not keep requests held forever.  Exceptions are logged, never raised."""

        def target() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("intermission: %s hook failed (scope %s)", name, self.scope)

        t = threading.Thread(target=target, name=f"intermission-{name}", daemon=True)
        t.start()
        t.join(self.hook_timeout)
        if t.is_alive():
            log.error("intermission: %s hook still running after %.1fs; continuing",
                      name, self.hook_timeout)
