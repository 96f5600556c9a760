"""The pauser's lease: renewal, re-assertion after the key was lost, and resume.

A :class:`PauseHandle` knows, on its own monotonic clock, until when its lease is valid:
the send time of the last successful set plus the ttl (Redis starts the TTL later, so
this is never after the real expiry, and app processes -- which compute their deadline
from the TTL they read -- never release before it).

The pause key can vanish while the lease is still valid: a Redis restart without
persistence, a failover to a replica that lacked it, a ``DEL``.  App processes keep
holding until their deadline in that case (see :mod:`intermission.agent`), and the
renew loop -- which runs every ``min(ttl/3, 1 s)`` so processes are refreshed long
before their deadline -- re-creates the lease with the SAME token and publishes a pause
event (recorded in :attr:`PauseHandle.reasserted`, logged as a warning).  It never
re-creates a lease whose token was resumed (the resume record says so, atomically) or
that another token holds, and never one that expired by its own clock.

Resuming after a loss tells the truth: ``RESUMED`` if the lease had been re-asserted,
``RESUMED_AFTER_LOSS`` if the key was gone while the lease was still valid here (the
resume record and event are written anyway, so every holder releases) -- see
:func:`describe_resume` for the operator-facing words.
"""

from __future__ import annotations

import _thread
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from intermission import protocol as p
from intermission.drain import close_acks, open_acks
from intermission.errors import LeaseLostError, RedisUnavailableError
from intermission.store import ResumeOutcome, SetLease, SetLeaseResult

if TYPE_CHECKING:
    from intermission.controller import Controller
    from intermission.drain import DrainReport

log = logging.getLogger("intermission")

MAX_RENEW_INTERVAL = 1.0  # check at least this often that the key still exists
UNREACHABLE_RETRY = 0.5


def renew_interval(ttl: float) -> float:
    """How often a held pause is renewed (and its key checked): ``min(ttl/3, 1 s)``."""
    return max(0.05, min(ttl / 3, MAX_RENEW_INTERVAL))


def start_daemon(target: Callable[[], None]) -> tuple[threading.Event, list[int]]:
    """Run ``target`` on a new daemon thread without waiting for it to start; return an
    Event set when it has returned, and a list that receives its thread ident.
    ``threading.Thread.start`` waits until the new thread runs: a scheduler round trip,
    0.27 ms p50 inside roleswap's pause window on the lab's 2-vCPU VMs.  The renew loop
    begins with a wait of ttl/3, so nothing needs it running sooner."""
    done = threading.Event()
    ident: list[int] = []

    def run() -> None:
        ident.append(threading.get_ident())
        try:
            target()
        finally:
            done.set()

    _thread.start_new_thread(run, ())
    return done, ident


@dataclass(frozen=True)
class Reassertion:
    """One re-creation of our lease after its key vanished while still valid here."""

    at: float  # wall clock (epoch seconds), for display
    monotonic: float  # the same instant on this host's monotonic clock
    left: float  # seconds our lease still had by our own clock when we re-created it


def describe_resume(outcome: ResumeOutcome, reasserted: int = 0) -> str:
    """What a resume did, in words for an operator (CLI output, roleswap report)."""
    lost = "the pause key was lost (Redis restarted?)"
    if reasserted:
        lost += f" and re-asserted {reasserted} time(s)"
    if outcome is ResumeOutcome.RESUMED:
        return f"{lost}; resumed" if reasserted else "resumed"
    if outcome is ResumeOutcome.RESUMED_AFTER_LOSS:
        return (f"{lost}; resumed anyway: the resume was published, so every process still "
                "holding requests for this pause released them")
    if outcome is ResumeOutcome.ALREADY_RESUMED:
        return "was already resumed"
    if outcome is ResumeOutcome.NOT_PAUSED:
        return "not paused (the pause expired or never existed)"
    return "another pause is active; it was NOT ended"


class PauseHandle:
    """A pause we hold.  Renewed in a background thread when ``auto_renew`` (see the
    module docstring); :attr:`lost` says why renewal stopped if the pause is no longer
    ours, :attr:`reasserted` lists every re-creation of a lost key, :attr:`valid_until`
    is the lease's end on this host's monotonic clock."""

    def __init__(self, controller: Controller, lease: p.Lease, auto_renew: bool, *,
                 valid_until: float | None = None, acks: Any = None) -> None:
        self.controller = controller
        # an ack subscription opened before the lease was set (Controller.pause), for the
        # first wait_drained; closed by that wait or at resume
        self._acks = acks
        self.lease = lease
        self.lost: str | None = None
        self.reasserted: list[Reassertion] = []
        self.valid_until = (valid_until if valid_until is not None
                            else time.monotonic() + lease.ttl)
        self.outcome: ResumeOutcome | None = None  # of the resume that ended it, if any
        self._lock = threading.RLock()  # one Redis operation on this lease at a time
        self._stop = threading.Event()
        # set when the renew thread (auto_renew) has exited; its ident once it runs
        self._renew_done: threading.Event | None = None
        self._renew_ident: list[int] = []
        if auto_renew:
            self._renew_done, self._renew_ident = start_daemon(self._renew_loop)

    @property
    def token(self) -> str:
        return self.lease.token

    def renew(self) -> p.Lease:
        """Extend the lease by its ttl from now.  If its key is gone while the lease is
        still valid by our clock (and the token was not resumed), re-create it with the
        same token.  LeaseLostError if the pause is not ours any more: resumed, replaced
        by another token, or expired by our clock."""
        with self._lock:
            if self.outcome is not None:
                raise LeaseLostError(f"pause {self.token} was resumed by this handle",
                                     remedy="start a new pause if the work must continue paused")
            store = self.controller.store
            new = p.Lease(self.token, self.lease.reason, self.lease.owner, self.lease.started_at,
                          time.time() + self.lease.ttl, self.lease.ttl)
            sent = time.monotonic()
            res = self.controller._call(lambda: store.set_lease(new, renew=True))
            left = self.valid_until - time.monotonic()
            if res.outcome is SetLease.LOST and left > 0:
                sent = time.monotonic()
                res = self.controller._call(lambda: store.set_lease(new, renew=False))
                if res.outcome is SetLease.OK:
                    self._reasserted(left)
            if res.outcome is not SetLease.OK:
                raise self._lost_error(res, left)
            self.lease = new
            self.valid_until = sent + new.ttl
            return new

    def _reasserted(self, left: float) -> None:
        self.reasserted.append(Reassertion(time.time(), time.monotonic(), left))
        log.warning(
            "intermission: the key of pause %s of scope %r was gone from Redis (restarted "
            "without persistence, or deleted) while the lease had %.1fs left; re-asserted it "
            "with the same token (%d time(s) so far)",
            self.token, self.controller.scope, left, len(self.reasserted))

    def _lost_error(self, res: SetLeaseResult, left: float) -> LeaseLostError:
        scope = self.controller.scope
        if res.outcome is SetLease.ALREADY_RESUMED:
            why = "it was resumed by someone else"
        elif res.outcome is SetLease.CONFLICT:
            other = f"token {res.current.token}" if res.current else "an unreadable value"
            why = f"the pause key now holds {other}"
        else:
            why = (f"its key is gone and the lease expired by our clock {-left:.1f}s ago "
                   "(app processes released at expiry)")
        return LeaseLostError(f"pause {self.token} of scope {scope!r} is no longer ours: {why}",
                              remedy="start a new pause if the work must continue paused")

    def _renew_loop(self) -> None:
        interval = renew_interval(self.lease.ttl)
        wait = interval
        failing = False
        while not self._stop.wait(wait):
            wait = interval
            try:
                with self._lock:  # a resume may have come between the wait and here
                    if self._stop.is_set():
                        return
                    self.renew()
            except LeaseLostError as exc:
                if self._stop.is_set():
                    return  # resumed by us meanwhile: nothing was lost
                self.lost = str(exc)
                log.warning("intermission: %s", exc)
                return
            except RedisUnavailableError as exc:
                if not failing:
                    log.warning("intermission: renewing pause %s failed (lease valid %.1fs "
                                "more by our clock); retrying every %gs: %s", self.token,
                                self.valid_until - time.monotonic(), UNREACHABLE_RETRY, exc)
                failing = True
                wait = min(UNREACHABLE_RETRY, interval)
                continue
            if failing:
                failing = False
                log.warning("intermission: Redis answers again; pause %s renewed", self.token)

    def stop_renewing(self, timeout: float = 2.0) -> bool:
        """Stop the renew thread and wait up to ``timeout`` for it to exit; True if it
        has (or there is none).  :meth:`resume` stops it without waiting."""
        self._stop.set()
        done = self._renew_done
        if done is None or threading.get_ident() in self._renew_ident:
            return True
        return done.wait(timeout)

    def wait_drained(self, timeout: float) -> DrainReport:
        """:meth:`Controller.wait_drained` for this pause; a key lost while our lease is
        valid does not end the wait (processes still hold; the renew loop re-asserts).
        Every call uses the subscription ``Controller.pause`` opened before the pause
        began (none is set up inside the window), or one it opens; the handle keeps it
        until :meth:`resume`.  Closing it here would cost the pauser's next Redis call a
        reconnect (~1 ms, measured in roleswap's window): redis-py hands the closed
        connection back to the pool, and the next command takes it and connects again."""
        # taken for the wait (a subscription serves one reader), put back after it
        acks, self._acks = self._acks, None
        if acks is None:
            acks = open_acks(self.controller.client, self.controller.store.acks)
        try:
            return self.controller.wait_drained(
                self.token, timeout, acks=acks,
                in_force=lambda: self.outcome is None and time.monotonic() < self.valid_until)
        finally:
            if self._stop.is_set() or self._acks is not None:  # resumed meanwhile, or a
                close_acks(acks)  # concurrent wait put its own back
            else:
                self._acks = acks

    def close_subscription(self) -> None:
        """Close the ack subscription the handle keeps for its waits (resume does this);
        for a pauser that leaves the pause to its TTL or to another process."""
        acks, self._acks = self._acks, None
        close_acks(acks)

    def resume(self, payload: dict[str, Any] | None = None, *,
               keep_subscription: bool = False) -> ResumeOutcome:
        """End this pause (idempotent: a second call reports ``ALREADY_RESUMED``).

        ``keep_subscription``: leave the ack subscription open; the caller closes it with
        :meth:`close_subscription` once the resume is behind it.  Closing it (disconnect
        and give the connection back, 0.15 ms measured) is no part of ending the pause,
        so a pauser that times its window (roleswap) does it after the window.

        If the key is gone while our lease is still valid by our clock, the pause is
        ended anyway (``RESUMED_AFTER_LOSS``); :meth:`describe` words the outcome.

        The renew thread is told to stop first and never waited for: a renew in progress
        finishes before the resume (``_lock``), none starts after it (the thread sees
        the stop before its next renew and exits by itself), and waiting for its exit
        -- a thread wake-up, 0.15 ms measured -- is no part of the pause window
        (:meth:`stop_renewing` waits, for whoever needs that)."""
        self._stop.set()
        try:
            with self._lock:
                if self.outcome is not None:
                    outcome = ResumeOutcome.ALREADY_RESUMED  # by us: no need to ask Redis
                else:
                    outcome = self.controller.resume(
                        token=self.token, payload=payload,
                        in_force=time.monotonic() < self.valid_until)
                    if outcome.ended:
                        self.outcome = outcome
        finally:
            if not keep_subscription:
                self.close_subscription()
        if outcome is ResumeOutcome.RESUMED_AFTER_LOSS:
            log.warning("intermission: pause %s of scope %r: %s", self.token,
                        self.controller.scope, self.describe(outcome))
        return outcome

    def describe(self, outcome: ResumeOutcome) -> str:
        """:func:`describe_resume` with this handle's re-assertion count."""
        return describe_resume(outcome, len(self.reasserted))

    def __enter__(self) -> PauseHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.resume()
        except RedisUnavailableError:
            if exc is None:
                raise
            log.exception("intermission: could not resume %s (it ends at its TTL)", self.token)
