"""Follow a Redis Sentinel failover that happens while a swap runs.

A connected client does not notice a failover.  After ``SENTINEL FAILOVER`` the old
master keeps taking writes for about 10 s, until the sentinels make it a replica of the
new one and discard them; after a crash (``kill -9``), writes the replica had not yet
received are gone.  Either way, the swap's last Redis writes (the journal, the lock,
the end of the pause, the published primary) can vanish without any error.

So the runner notes which master the swap writes to when it starts
(:func:`remember_master`), and asks the sentinels again twice, both outside the pause
window: right after traffic resumes, and when the swap ends (:func:`follow`).  If the
master has moved, the swap writes its state again on the new master: the whole journal
record, the lock (still held, or released again if the swap is over), the end of the
pause (if it was resumed or undone), and the switch method's own Redis state (the
endpoint method's published primary).  A note in the result says what was written
again.  With a plain Redis URL this does nothing and costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from intermission.errors import IntermissionError
from roleswap.coord import client as redis_client
from roleswap.coord.lock import ClusterLock
from roleswap.coord.swapstate import release_stale, stale_lock
from roleswap.swap.context import SwapContext

__all__ = ["follow", "remember_master"]


def remember_master(ctx: SwapContext) -> None:
    """Note the master the swap's Redis client writes to now (Sentinel only)."""
    ctx.redis_master = redis_client.master_address(ctx.redis)


def follow(ctx: SwapContext) -> None:
    """If the Sentinel master moved since :func:`remember_master`, write the swap's
    Redis state again on the new one and say so in ``ctx.notes``.  Never raises."""
    seen = ctx.redis_master
    if ctx.redis is None or seen is None:
        return
    try:
        now = redis_client.master_now(ctx.redis)
    except redis.RedisError as e:
        ctx.notes.append(f"could not ask the sentinels which Redis is the master now "
                         f"({type(e).__name__}); if Redis failed over during the swap, run "
                         "`roleswap status`: it says what Redis lost")
        return
    if now is None or now == seen:
        return
    ctx.redis_master = now
    redis_client.drop_connections(ctx.redis)
    written, failed = rewrite(ctx)
    note = (f"Redis failed over during the swap (master {seen} -> {now}): what the swap "
            f"wrote to {seen} since then is lost")
    if written:
        note += f"; wrote {', '.join(written)} again on {now}"
    if failed:
        note += (f"; could not write {', '.join(failed)} again: run `roleswap status`, then "
                 "`roleswap recover` if it reports a problem")
    ctx.notes.append(note)


def rewrite(ctx: SwapContext) -> tuple[list[str], list[str]]:
    """Write the swap's Redis state again (the client already points at the new
    master).  Returns (what was written, what could not be)."""
    from roleswap.swap.steps_traffic import cluster_lock, controller, resume_payload

    status = ctx.journal.last_status()
    written: list[str] = []
    failed: list[str] = []

    def attempt(what: str, write: Callable[[], bool]) -> None:
        try:
            if write():
                written.append(what)
        except (redis.RedisError, IntermissionError) as e:
            failed.append(f"{what} ({type(e).__name__})")

    def journal() -> bool:
        ctx.journal.rewrite()
        if ctx.journal.redis_error:
            raise redis.RedisError(ctx.journal.redis_error)
        return True

    attempt("the journal", journal)
    token = ctx.state.get("lock_token")
    if token:
        lock = cluster_lock(ctx)
        over = status.get("unlock") == "done" or status.get("lock") == "undone"
        if lock is not None and over:
            attempt("the lock's release", lambda: lock.release() or True)
        elif lock is not None:
            attempt("the lock", lambda: _reassert(ctx, lock))
    pause_token = ctx.state.get("pause_token")
    resumed = status.get("resume") == "done"
    if pause_token and (resumed or status.get("pause") == "undone"):
        payload = resume_payload(ctx) if resumed else None
        attempt("the end of the pause",
                lambda: controller(ctx).resume(token=pause_token, payload=payload).ended)
    if ctx.switch is not None:
        what = ctx.switch.rewrite_redis(ctx, status)
        if what is not None:
            attempt(what[0], what[1])
    return written, failed


def _reassert(ctx: SwapContext, lock: ClusterLock) -> bool:
    """Hold the lock again; a lock the new master brought back from an earlier swap whose
    process is gone (see :func:`~roleswap.coord.swapstate.stale_lock`) is replaced."""
    if lock.reassert():
        return True
    stale = stale_lock(ctx.journal, lock.client, ctx.config.cluster)
    if stale is not None and release_stale(lock.client, ctx.config.cluster, stale) \
            and lock.reassert():
        ctx.notes.append(f"the new Redis master held the lock of earlier swap {stale.swap_id} "
                         "(its process is gone): replaced it with this swap's")
        return True
    holder = lock.holder() or {}
    ctx.notes.append(f"after the Redis failover the cluster lock is held by swap "
                     f"{holder.get('swap_id')} on {holder.get('host')}, pid {holder.get('pid')}")
    return False
