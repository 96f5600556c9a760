"""The pauser's side: start, renew, wait for drain, and end pauses.

    ctl = Controller("redis://127.0.0.1:6379/0", "web")
    with ctl.pause("switchover", ttl=15) as pause:          # auto-renewed while held
        report = pause.wait_drained(timeout=5)               # never hangs
        if not report.drained:
            print(report)                                    # who is still busy
        ...                                                  # do the maintenance
        pause.resume({"primary": "10.0.0.2:3306"})           # payload reaches on_resume
    # leaving the block always resumes (idempotent if resumed already)

A pause is a lease with a TTL: if this process dies, the pause ends by itself at
expiry everywhere.  Resuming with a stale token never ends a newer pause.  A crashed
pauser's successor can end the pause it journaled: ``Controller(...).resume(token=t)``
or ``Controller(...).attach(t)``.  If the pause key was lost (Redis restarted) while
the pause is still in force, the handle re-asserts it and a resume still ends it
everywhere (see :mod:`intermission.handle`).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import redis

from intermission import drain
from intermission import protocol as p
from intermission.client import connect
from intermission.client import describe as describe_address
from intermission.client import parse as parse_address
from intermission.drain import DrainReport, pending_for
from intermission.errors import (
    LeaseLostError,
    PauseConflictError,
    ProtocolError,
    RedisUnavailableError,
)
from intermission.handle import PauseHandle, Reassertion, describe_resume
from intermission.store import LeaseState, ResumeOutcome, SetLease, Store

log = logging.getLogger("intermission")
T = TypeVar("T")

__all__ = ["Controller", "DrainReport", "PauseHandle", "Reassertion", "Status",
           "describe_resume", "pending_for"]


@dataclass(frozen=True)
class Status:
    scope: str
    lease: p.Lease | None
    ttl_remaining: float | None
    processes: list[p.ProcessInfo]
    last_resume: p.ResumeRecord | None

    @property
    def paused(self) -> bool:
        return self.lease is not None

    @property
    def host_agents(self) -> int:
        return sum(1 for i in self.processes if i.kind == "host")

    @property
    def app_processes(self) -> int:
        """App processes that hold requests: each with its own heartbeat, plus those a host
        agent carries (its ``processes`` metric)."""
        return sum(int(i.metrics.get("processes", 0)) if i.kind == "host" else 1
                   for i in self.processes)

    def describe_processes(self) -> str:
        """"3 live process(es)", or with host agents "1 host agent(s) carrying 4 app
        process(es)" (plus the processes on their own)."""
        hosts = self.host_agents
        if not hosts:
            return f"{len(self.processes)} live process(es)"
        carried = self.app_processes - (len(self.processes) - hosts)
        own = len(self.processes) - hosts
        return (f"{hosts} host agent(s) carrying {carried} app process(es)"
                + (f" and {own} process(es) with their own agent" if own else ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope, "paused": self.paused,
            "lease": asdict(self.lease) if self.lease else None,
            "ttl_remaining": self.ttl_remaining,
            "processes": [asdict(i) for i in self.processes],
            "last_resume": asdict(self.last_resume) if self.last_resume else None,
        }


class Controller:
    """Pause control for one scope.  ``redis``: a client or a URL -- ``redis://...`` or
    ``redis+sentinel://...`` (see :mod:`intermission.client`); we then use short socket
    timeouts, for the sentinels too, so no call can hang)."""

    def __init__(self, redis_client: redis.Redis | str, scope: str, *,
                 socket_timeout: float = 2.0) -> None:
        self.scope = p.validate_scope(scope)
        if isinstance(redis_client, str):
            address = parse_address(redis_client)
            self.url = describe_address(address)
            client = connect(address, socket_timeout=socket_timeout,
                             socket_connect_timeout=socket_timeout)
        else:
            self.url = "the given Redis client"
            client = redis_client
        self.client = client
        self.store = Store(client, self.scope)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise RedisUnavailableError(
                f"cannot reach Redis at {self.url}: {exc}",
                remedy="check that redis-server runs (for redis+sentinel://: that the "
                       "sentinels run and know the master) and the URL/password are right "
                       "(--redis or INTERMISSION_REDIS_URL)",
            ) from exc
        except redis.AuthenticationError as exc:
            raise RedisUnavailableError(f"Redis at {self.url} refused our credentials",
                                        remedy="fix the password in the URL") from exc

    def pause(self, reason: str = "", ttl: float = 30.0, *, owner: str | None = None,
              token: str | None = None, auto_renew: bool = True,
              prepare_drain: bool = True, acks: Any = None) -> PauseHandle:
        """Start a pause (or re-assert ours: same ``token`` = idempotent retry).

        ``prepare_drain``: subscribe to the acks channel before setting the lease, so the
        handle's first :meth:`PauseHandle.wait_drained` starts with no connection setup
        inside the pause window (the handle keeps it for its waits and closes it at resume).
        ``acks``: a subscription from :meth:`open_acks` made earlier (then even its setup
        is outside this call); it is the handle's from here on.
        Raises PauseConflictError if another pause is active, LeaseLostError if
        ``token`` was already resumed, RedisUnavailableError if Redis is unreachable.
        """
        ttl = p.validate_ttl(ttl)
        now = time.time()
        lease = p.Lease(
            token=p.validate_token(token) if token is not None else p.new_token(),
            reason=reason, owner=owner if owner is not None else default_owner(),
            started_at=now, expires_at=now + ttl, ttl=ttl,
        )
        if acks is None and prepare_drain:
            acks = drain.open_acks(self.client, self.store.acks)
        try:
            sent = time.monotonic()
            res = self._call(lambda: self.store.set_lease(lease, renew=False))
            if res.outcome is SetLease.ALREADY_RESUMED:
                raise LeaseLostError(f"pause {lease.token} was already resumed",
                                     remedy="use a new token for a new pause")
            if res.outcome is SetLease.CONFLICT:
                raise conflict(self.scope, res.current, res.current_ttl)
        except BaseException:
            drain.close_acks(acks)
            raise
        return PauseHandle(self, lease, auto_renew, valid_until=sent + ttl, acks=acks)

    def open_acks(self) -> Any:
        """Subscribe to this scope's acks now, ahead of a :meth:`pause` (``acks=``), and
        read the live process ids: a pauser with time before its pause (roleswap's
        pre-sync) keeps the connection setup out of the pause window, and the wait's
        first read inside it is one round trip.  None if Redis refused (the wait then
        subscribes itself).  Close an unused one with :func:`intermission.drain.close_acks`."""
        acks = drain.open_acks(self.client, self.store.acks)
        if acks is not None:  # else the wait's first read finds them (one round trip more)
            with contextlib.suppress(redis.RedisError, OSError):
                self.store.process_ids()
        return acks

    def attach(self, token: str, *, auto_renew: bool = False) -> PauseHandle:
        """A handle on the active pause ``token`` (e.g. after the pauser crashed)."""
        sent = time.monotonic()
        state = self.read()
        if state.lease is None or state.lease.token != token:
            raise LeaseLostError(
                f"pause {token} is not active on scope {self.scope!r}"
                + (f" (active: {state.lease.token})" if state.lease else ""),
                remedy="nothing to resume; check `intermission status`",
            )
        left = state.ttl_remaining if state.ttl_remaining is not None else state.lease.ttl
        return PauseHandle(self, state.lease, auto_renew, valid_until=sent + left)

    def resume(self, token: str | None = None, payload: dict[str, Any] | None = None, *,
               in_force: bool = False) -> ResumeOutcome:
        """End pause ``token`` (None: whichever pause is active now).

        If the pause key is gone but the pause is still in force -- ``in_force`` (the
        caller's lease is valid by its own clock: :class:`PauseHandle` passes it) or a
        live process reports holding requests for it -- the resume is written and
        published anyway and ``RESUMED_AFTER_LOSS`` is returned, never ``NOT_PAUSED``."""
        if token is None:
            state = self.read()
            if state.lease is not None:
                return self._resume_one(state.lease.token, payload, lost_ok=False)
            outcomes = [self._resume_one(t, payload, lost_ok=True) for t in self.held_tokens()]
            if ResumeOutcome.RESUMED_AFTER_LOSS in outcomes:
                return ResumeOutcome.RESUMED_AFTER_LOSS
            return ResumeOutcome.NOT_PAUSED
        outcome = self._resume_one(token, payload, lost_ok=in_force)
        if outcome is ResumeOutcome.NOT_PAUSED and token in self.held_tokens():
            outcome = self._resume_one(token, payload, lost_ok=True)
        return outcome

    def _resume_one(self, token: str, payload: dict[str, Any] | None, *,
                    lost_ok: bool) -> ResumeOutcome:
        outcome, _current = self._call(
            lambda: self.store.resume(token, payload, time.time(), lost_ok=lost_ok))
        return outcome

    def held_tokens(self) -> list[str]:
        """Pause tokens that live processes report holding requests for right now (from
        their heartbeats): a pause still in force there even if its key is gone."""
        procs = self._call(self.store.processes)
        return sorted({i.acked_token for i in procs if i.paused and i.acked_token})

    def read(self) -> LeaseState:
        try:
            return self._call(self.store.read)
        except ProtocolError as exc:
            raise ProtocolError(
                str(exc), remedy=f"delete the key {p.lease_key(self.scope)} if it is junk"
            ) from exc

    def status(self) -> Status:
        state = self.read()
        procs = self._call(self.store.processes)
        return Status(self.scope, state.lease, state.ttl_remaining, procs, state.last_resume)

    def wait_drained(self, token: str, timeout: float, *,
                     in_force: Callable[[], bool] | None = None, acks: Any = None) -> DrainReport:
        """Return once every live process acknowledged ``token`` with 0 in flight, or at
        ``timeout`` (seconds) with who has not.  Wakes on ack notifications and re-reads
        only the processes that acked, re-reads everything every 100 ms as a fallback and
        before answering drained (see :mod:`intermission.drain`); Redis errors are retried
        until the timeout, never raised.  A missing key ends the wait as "no longer
        active" unless ``in_force()`` says the pause still holds (the key was lost, e.g.
        Redis restarted) and it was not resumed.  ``acks``: an ack subscription opened
        before the pause (``PauseHandle`` passes the one ``pause()`` prepared); the
        caller keeps ownership of it."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0; got {timeout!r}")
        return drain.wait_drained(self.store, token, timeout, in_force=in_force, acks=acks)


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[: p.MAX_TEXT]


def conflict(scope: str, current: p.Lease | None, ttl: float | None) -> PauseConflictError:
    if current is None:
        return PauseConflictError(
            f"scope {scope!r} holds an unreadable pause key", None,
            remedy=f"inspect or delete {p.lease_key(scope)}",
        )
    left = f", ends in {ttl:.1f}s" if ttl else ""
    return PauseConflictError(
        f"scope {scope!r} is already paused by {current.owner} "
        f"(reason {current.reason!r}, token {current.token}{left})",
        current,
        remedy=f"wait for it to end, or: intermission resume --scope {scope} "
               f"--token {current.token}",
    )
