"""The coordination steps: cluster lock, pause + drain, resume (point of no return), unlock."""

from __future__ import annotations

import time
from typing import Any

import redis

from intermission.controller import Controller, DrainReport, describe_resume
from intermission.errors import IntermissionError, RedisUnavailableError
from intermission.protocol import new_token
from intermission.store import ResumeOutcome
from roleswap.coord import client as redis_client
from roleswap.coord.lock import ClusterLock
from roleswap.errors import StepError
from roleswap.swap.context import SwapContext
from roleswap.swap.step import Step


def cluster_lock(ctx: SwapContext) -> ClusterLock | None:
    """The cluster lock, or None when swapping without Redis (--no-pause, Redis down)."""
    if ctx.redis is None and not ctx.opts.pause:
        return None
    if ctx.redis is None:
        raise StepError("no [redis] url in the config: the cluster lock needs Redis",
                        remedy="add [redis] url = \"redis://...\" to the config")
    lock = ClusterLock(ctx.redis, ctx.config.cluster, ctx.opts.lock_ttl)
    token = ctx.state.get("lock_token")
    if token:
        lock.adopt(token)
    return lock


def controller(ctx: SwapContext) -> Controller:
    """intermission's Controller on the swap's Redis client, one per swap and client (a
    Redis failover gives a new one): the pause step's wait then starts from the process
    ids pre-sync's ``open_acks`` read.  Its messages name the Redis as roleswap's config
    does (masked URL + the config key), never as intermission's own options
    (``--redis``, ``INTERMISSION_REDIS_URL``)."""
    if ctx.redis is None:
        raise StepError("no [redis] url in the config: pausing traffic needs Redis",
                        remedy="add [redis] url, or run with --no-pause")
    c = ctx.pause_controller
    if c is None or c.client is not ctx.redis:
        c = Controller(ctx.redis, ctx.config.scope)
        c.url = redis_client.where(ctx.config)
        ctx.pause_controller = c
    return c


def redis_remedy(ctx: SwapContext, e: Exception, default: str) -> str:
    """What to do about ``e`` from Redis/intermission, in roleswap's terms: a Redis
    that cannot be reached points at the config, a pause conflict keeps its own advice."""
    if isinstance(e, redis.RedisError | RedisUnavailableError):
        return (f"check {redis_client.config_key(ctx.config)} in {ctx.config.source} and that "
                f"Redis runs there; {default}")
    return getattr(e, "remedy", "") or default


class Lock(Step):
    name = "lock"

    def title(self, ctx: SwapContext) -> str:
        return f"take the cluster lock for {ctx.config.cluster!r} (TTL {ctx.opts.lock_ttl:g}s)"

    def apply(self, ctx: SwapContext) -> str:
        lock = cluster_lock(ctx)
        if lock is None:
            return "skipped: no Redis (--no-pause)"
        if lock.token and lock.refresh():
            return "held"
        if not lock.acquire(ctx.swap_id):
            holder = lock.holder() or {}
            raise StepError(f"another swap holds the cluster lock (swap {holder.get('swap_id')} "
                            f"on {holder.get('host')}, pid {holder.get('pid')})",
                            remedy="wait for it to finish, or run `roleswap recover`")
        ctx.remember(lock_token=lock.token)
        return "acquired"

    def undo(self, ctx: SwapContext) -> str:
        lock = cluster_lock(ctx)
        if lock is None:
            return "no lock was taken"
        return _release(ctx, lock)


class Unlock(Lock):
    name = "unlock"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        return "release the cluster lock"

    def apply(self, ctx: SwapContext) -> str:
        lock = cluster_lock(ctx)
        if lock is None:
            return "skipped: no Redis (--no-pause)"
        # the swap is done: worth a few seconds so the next one need not wait for the TTL
        return _release(ctx, lock, retry_for=min(UNLOCK_RETRY_S, ctx.opts.lock_ttl))

    def undo(self, ctx: SwapContext) -> str:
        return "nothing to undo"


class Pause(Step):
    """Hold new web requests (intermission) and wait for in-flight ones to finish."""

    name = "pause"

    def title(self, ctx: SwapContext) -> str:
        return (f"pause traffic (scope {ctx.config.scope!r}, lease {ctx.opts.pause_ttl:g}s) and wait "
                f"up to {ctx.opts.drain_timeout:g}s for in-flight requests ({ctx.opts.drain_policy} "
                "on timeout)")

    def apply(self, ctx: SwapContext) -> str:
        acks, ctx.pause_acks = ctx.pause_acks, None
        token = ctx.state.get("pause_token")  # journaled before this step (prepare_pause)
        try:
            handle = controller(ctx).pause(
                reason=f"roleswap {ctx.source}->{ctx.target} ({ctx.swap_id})",
                ttl=ctx.opts.pause_ttl, owner=f"roleswap:{ctx.swap_id}", acks=acks, token=token)
        except (redis.RedisError, IntermissionError) as e:
            # as before tokens were chosen ahead: no handle, no token to resume (a lease
            # set whose reply was lost ends at its TTL); else the undo fails on Redis too
            ctx.state.pop("pause_token", None)
            raise StepError(f"could not pause traffic: {_why(e)}",
                            remedy=redis_remedy(ctx, e, "or swap with --no-pause")) from None
        ctx.pause_handle = handle
        if token != handle.token:  # no pre-sync ran: journaled here, inside the window
            ctx.remember(pause_token=handle.token)
        report = handle.wait_drained(ctx.opts.drain_timeout)
        if report.drained:
            return f"{_summary(report)}"
        if ctx.opts.drain_policy == "abort":
            raise StepError(f"requests still in flight after {ctx.opts.drain_timeout:g}s: "
                            f"{_summary(report)}",
                            remedy="raise --drain-timeout, or use --drain-policy proceed")
        ctx.notes.append(f"drain timed out ({_summary(report)}); fenced anyway: "
                         "their writes fail with read_only rather than get lost")
        return f"drain timed out, proceeding: {_summary(report)}"

    def undo(self, ctx: SwapContext) -> str:
        return _resume(ctx, payload=None)


def prepare_pause(ctx: SwapContext) -> None:
    """Right before the pause (pre-sync's last act): subscribe to the apps' acks now, so
    the pause step starts with the lease and no connection setup is inside the window;
    and choose the pause's token, journaled with pre-sync's end (the journal write that
    precedes the pause anyway): the pause step then writes nothing before its drain, and
    recover knows the token even if the swap dies between the lease and that write."""
    if not ctx.opts.pause:
        return
    if "pause_token" not in ctx.state:
        ctx.remember_with_end(pause_token=new_token())
    if ctx.redis is not None and ctx.pause_acks is None:
        try:
            ctx.pause_acks = controller(ctx).open_acks()
        except (redis.RedisError, OSError, IntermissionError):
            ctx.pause_acks = None  # the pause step subscribes itself, and reports Redis


class Resume(Step):
    """Release held requests; they now reach the new primary.  The point of no return."""

    name = "resume"
    ponr = True
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        if not ctx.opts.pause:
            return "point of no return (traffic was not paused: --no-pause)"
        return f"resume traffic with the new primary {ctx.target} in the payload (point of no return)"

    def apply(self, ctx: SwapContext) -> str:
        if not ctx.opts.pause:
            return "nothing paused"
        return _resume(ctx, resume_payload(ctx))


def resume_payload(ctx: SwapContext) -> dict[str, Any]:
    """What the apps receive with the resume: the new primary and the swap id."""
    s = ctx.server(ctx.target)
    return {"primary": {"name": s.name, "host": s.host, "port": s.port}, "swap_id": ctx.swap_id}


def _resume(ctx: SwapContext, payload: dict[str, Any] | None) -> str:
    handle = ctx.pause_handle
    try:
        if handle is not None:
            # Its ack subscription is closed by ctx.close(), after the swap: closing
            # it here would add 0.15 ms to the pause window and buy nothing.
            outcome = handle.resume(payload=payload, keep_subscription=True)
        elif ctx.state.get("pause_token"):
            outcome = controller(ctx).resume(token=ctx.state["pause_token"], payload=payload)
        else:
            return "nothing paused"
    except (redis.RedisError, IntermissionError) as e:
        raise StepError(f"could not resume traffic: {_why(e)}",
                        remedy=f"the pause ends by itself within {ctx.opts.pause_ttl:g}s "
                               f"(lease TTL); or run `intermission resume --scope {ctx.config.scope}`"
                        ) from None
    ctx.pause_handle, ctx.resumed_handle = None, handle
    if outcome.ended:  # RESUMED, or RESUMED_AFTER_LOSS (the key was lost: Redis restarted?)
        said = describe_resume(outcome, len(handle.reasserted) if handle is not None else 0)
        if said != "resumed":
            ctx.notes.append(f"intermission: {said}")
        return said
    if outcome is ResumeOutcome.ALREADY_RESUMED:
        return "was already resumed"
    # The lease ended on its own (expired) or another pause replaced it: apps already
    # released their requests without this payload.
    if payload is not None:
        ctx.notes.append(f"the pause had already ended ({outcome.value}) before resume: apps "
                         "did not get the new primary in the resume payload; they must read "
                         "the published endpoint")
    return f"not resumed by us: {outcome.value}"


UNLOCK_RETRY_S = 10.0  # a Redis that stalls (fsync, failover, SIGSTOP) for a few seconds


def _release(ctx: SwapContext, lock: ClusterLock, retry_for: float = 0.0) -> str:
    """Release the lock if still ours, retrying Redis errors for ``retry_for`` seconds.
    A Redis error is not a failure: the lock expires by itself after its TTL, and
    nothing else depends on releasing it now (found by tests/faults: Redis stopped for
    4.6 s during verify left the lock of a finished swap held for its whole TTL)."""
    deadline = time.monotonic() + retry_for
    delay = 0.1
    while True:
        try:
            taken_at = lock.taken_at()
            if lock.release():
                return "released"
            if taken_at is not None and time.time() - taken_at < ctx.opts.lock_ttl - 1:
                ctx.notes.append(
                    "the cluster lock was gone before its TTL ran out: Redis lost it (a failover "
                    "to a replica that lacked it, or a restart without persistence) or someone "
                    "deleted it. Another roleswap could have taken it meanwhile: check "
                    "`roleswap status` for a swap in progress before the next swap")
                return "was not held: lost before its TTL (Redis failover?)"
            return "was not held (expired?)"
        except redis.RedisError as e:
            if time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            why = type(e).__name__
        ctx.notes.append(f"the cluster lock could not be released (Redis error {why}); "
                         f"it expires by itself within {ctx.opts.lock_ttl:g}s: check "
                         f"{redis_client.where(ctx.config)} and that Redis runs there")
        return f"not released (Redis error {why}); expires within {ctx.opts.lock_ttl:g}s"


def _summary(report: DrainReport) -> str:
    return str(report).splitlines()[0]


def _why(e: Exception) -> str:
    """The problem only: an IntermissionError's ``str`` appends intermission's own remedy
    (its CLI options), which is wrong advice for roleswap.  Raw Redis errors can carry
    the URL; intermission's messages mask passwords already."""
    if isinstance(e, IntermissionError):
        return e.message
    refused = redis_client.refusal(e) if isinstance(e, redis.RedisError) else None
    return f"Redis error {type(e).__name__}" + (f": {refused[0]}" if refused else "")
