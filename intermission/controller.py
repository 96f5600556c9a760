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
or ``Controller(...).attach(t)``.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, TypeVar

import redis

from intermission import protocol as p
from intermission.errors import (
    LeaseLostError,
    PauseConflictError,
    ProtocolError,
    RedisUnavailableError,
)
from intermission.store import LeaseState, ResumeOutcome, SetLease, Store

log = logging.getLogger("intermission")
T = TypeVar("T")


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

    def __str__(self) -> str:
        head = "drained" if self.drained else "NOT drained"
        lines = [f"{head} after {self.elapsed * 1000:.1f} ms: "
                 f"{len(self.processes)} live process(es), {len(self.pending)} pending"]
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
            "error": self.error,
        }


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope, "paused": self.paused,
            "lease": asdict(self.lease) if self.lease else None,
            "ttl_remaining": self.ttl_remaining,
            "processes": [asdict(i) for i in self.processes],
            "last_resume": asdict(self.last_resume) if self.last_resume else None,
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


class PauseHandle:
    """A pause we hold.  Renewed in a background thread when ``auto_renew`` (every
    ttl/3); :attr:`lost` says why renewal stopped if the lease went away under us."""

    def __init__(self, controller: Controller, lease: p.Lease, auto_renew: bool) -> None:
        self.controller = controller
        self.lease = lease
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if auto_renew:
            self._thread = threading.Thread(
                target=self._renew_loop, name="intermission-renew", daemon=True
            )
            self._thread.start()

    @property
    def token(self) -> str:
        return self.lease.token

    def renew(self) -> p.Lease:
        """Extend the lease by its ttl from now; LeaseLostError if it is not ours any more."""
        now = time.time()
        new = p.Lease(self.token, self.lease.reason, self.lease.owner, self.lease.started_at,
                      now + self.lease.ttl, self.lease.ttl)
        res = self.controller._call(lambda: self.controller.store.set_lease(new, renew=True))
        if res.outcome is not SetLease.OK:
            who = f" (now held by token {res.current.token})" if res.current else ""
            raise LeaseLostError(
                f"pause {self.token} of scope {self.controller.scope!r} is no longer ours: "
                f"{res.outcome.value}{who}",
                remedy="start a new pause if the work must continue paused",
            )
        self.lease = new
        return new

    def _renew_loop(self) -> None:
        interval = max(0.05, self.lease.ttl / 3)
        wait = interval
        while not self._stop.wait(wait):
            try:
                self.renew()
                wait = interval
            except LeaseLostError as exc:
                self.lost = str(exc)
                log.warning("intermission: %s", exc)
                return
            except RedisUnavailableError as exc:
                log.warning("intermission: renewing pause %s failed, retrying: %s",
                            self.token, exc)
                wait = min(0.5, interval)

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def wait_drained(self, timeout: float) -> DrainReport:
        return self.controller.wait_drained(self.token, timeout)

    def resume(self, payload: dict[str, Any] | None = None) -> ResumeOutcome:
        """End this pause (idempotent: a second call reports ``ALREADY_RESUMED``)."""
        self.stop_renewing()
        return self.controller.resume(token=self.token, payload=payload)

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


class Controller:
    """Pause control for one scope.  ``redis``: a client or a URL (we then use short
    socket timeouts so no call can hang)."""

    def __init__(self, redis_client: redis.Redis | str, scope: str, *,
                 socket_timeout: float = 2.0) -> None:
        self.scope = p.validate_scope(scope)
        if isinstance(redis_client, str):
            self.url = p.mask_url(redis_client)
            client = redis.Redis.from_url(
                redis_client, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
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
                remedy="check that redis-server runs and the URL/password are right "
                       "(--redis or INTERMISSION_REDIS_URL)",
            ) from exc
        except redis.AuthenticationError as exc:
            raise RedisUnavailableError(f"Redis at {self.url} refused our credentials",
                                        remedy="fix the password in the URL") from exc

    def pause(self, reason: str = "", ttl: float = 30.0, *, owner: str | None = None,
              token: str | None = None, auto_renew: bool = True) -> PauseHandle:
        """Start a pause (or re-assert ours: same ``token`` = idempotent retry).

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
        res = self._call(lambda: self.store.set_lease(lease, renew=False))
        if res.outcome is SetLease.ALREADY_RESUMED:
            raise LeaseLostError(f"pause {lease.token} was already resumed",
                                 remedy="use a new token for a new pause")
        if res.outcome is SetLease.CONFLICT:
            raise conflict(self.scope, res.current, res.current_ttl)
        return PauseHandle(self, lease, auto_renew)

    def attach(self, token: str, *, auto_renew: bool = False) -> PauseHandle:
        """A handle on the active pause ``token`` (e.g. after the pauser crashed)."""
        state = self.read()
        if state.lease is None or state.lease.token != token:
            raise LeaseLostError(
                f"pause {token} is not active on scope {self.scope!r}"
                + (f" (active: {state.lease.token})" if state.lease else ""),
                remedy="nothing to resume; check `intermission status`",
            )
        return PauseHandle(self, state.lease, auto_renew)

    def resume(self, token: str | None = None,
               payload: dict[str, Any] | None = None) -> ResumeOutcome:
        """End pause ``token`` (None: whichever pause is active now)."""
        if token is None:
            state = self.read()
            if state.lease is None:
                return ResumeOutcome.NOT_PAUSED
            token = state.lease.token
        tok = token
        outcome, _current = self._call(lambda: self.store.resume(tok, payload, time.time()))
        return outcome

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

    def wait_drained(self, token: str, timeout: float) -> DrainReport:
        """Return once every live process acknowledged ``token`` with 0 in flight, or at
        ``timeout`` (seconds) with who has not.  Wakes on ack notifications, polls every
        100 ms as a fallback; Redis errors are retried until the timeout, never raised."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0; got {timeout!r}")
        start = time.monotonic()
        deadline = start + timeout
        procs: list[p.ProcessInfo] = []
        error: str | None = None
        with self._ack_subscription() as pubsub:
            while True:
                try:
                    state = self.store.read()
                    procs = self.store.processes()
                    error = None
                    if state.lease is None or state.lease.token != token:
                        error = "the pause is no longer active (expired, resumed or replaced)"
                except (redis.RedisError, OSError, ProtocolError) as exc:
                    error = f"Redis: {exc}"
                pending = pending_for(token, procs)
                now = time.monotonic()
                done = not pending and error is None
                lost = error is not None and error.startswith("the pause")
                if done or lost or now >= deadline:
                    return DrainReport(token, done, now - start, procs, pending, error)
                _wait_ack(pubsub, min(0.1, deadline - now))

    @contextlib.contextmanager
    def _ack_subscription(self) -> Iterator[Any]:
        pubsub = None
        try:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.store.acks)
        except (redis.RedisError, OSError):
            pubsub = None
        try:
            yield pubsub
        finally:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()


def _wait_ack(pubsub: Any, timeout: float) -> None:
    if pubsub is None:
        time.sleep(min(timeout, 0.02))
        return
    try:
        msg = pubsub.get_message(timeout=timeout)
        while msg is not None:  # swallow the burst, then re-read once
            msg = pubsub.get_message(timeout=0.0)
    except (redis.RedisError, OSError):
        time.sleep(min(timeout, 0.02))


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
