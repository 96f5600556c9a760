"""The fence and what proves it held: fence, catch-up, fence-check.

``fence`` makes the old primary refuse writes (and, with ``--kill-privileged``,
kills the sessions that could write through it); ``catch-up`` captures its final
position and waits for the target; ``fence-check`` re-reads that position at the
last moment before the point of no return.  If it moved, a write got through the
fence after the position was captured: the swap rolls back, so the write (already
acknowledged to its client) is kept on the old primary instead of being lost.
"""

from __future__ import annotations

import time

import pymysql

from roleswap.errors import RoleSwapError, StepError
from roleswap.mysql import sessions as msess
from roleswap.mysql.dialect import Dialect
from roleswap.swap.context import SwapContext
from roleswap.swap.positions import fmt as _fmt
from roleswap.swap.positions import missed, mode, same
from roleswap.swap.replica_ops import forget_source, is_read_only, replicates_from
from roleswap.swap.step import Step


class Fence(Step):
    """Make the old primary refuse writes (bounded: a blocked read_only gives up safely)."""

    name = "fence"

    def title(self, ctx: SwapContext) -> str:
        kill = "; kill sessions that bypass it" if ctx.opts.kill_privileged else ""
        return f"set read_only on {ctx.source} (lock_wait_timeout {ctx.opts.fence_timeout}s){kill}"

    def apply(self, ctx: SwapContext) -> str:
        d = ctx.dialect(ctx.source)
        try:
            ctx.run(ctx.source, d.fence(ctx.opts.fence_timeout))
        except RoleSwapError as e:
            raise StepError(f"could not fence {ctx.source}: {e.message}",
                            remedy="a long statement or LOCK TABLES holds it; retry when it ends, "
                                   "or raise --fence-timeout" if "1205" in e.message
                            else e.remedy) from None
        detail = f"{ctx.source} {d.fence_var}"
        if ctx.opts.kill_privileged and not d.fence_bypass_privileges:
            # super_read_only (MySQL) stops every account: no session is privileged
            detail += f"; --kill-privileged: nothing to kill, {d.fence_var} stops every account"
        elif ctx.opts.kill_privileged:
            detail += self._kill_bypassing(ctx)
        return detail

    def _kill_bypassing(self, ctx: SwapContext) -> str:
        conn = ctx.conn(ctx.source)
        t0 = time.monotonic()
        try:
            found, _users = msess.fence_bypassing_sessions(conn, ctx.dialect(ctx.source),
                                                           ctx.config.mysql.user)
            killed = msess.kill_sessions(conn, [s.id for s in found])
            # bounded like the fence itself: a commit in flight ends in milliseconds; what
            # outlasts --fence-timeout (a long rollback) commits nothing, and fence-check
            # still rolls the swap back if a write did land after catch-up's read
            left = msess.wait_until_gone(conn, killed, ctx.opts.fence_timeout)
        except pymysql.MySQLError as e:
            raise StepError(f"could not kill the sessions that bypass read_only on {ctx.source}: {e}",
                            remedy="grant the control account CONNECTION ADMIN (see README), or "
                                   "disconnect them and retry without --kill-privileged") from None
        ctx.remember(killed_sessions=killed)
        if not killed:
            return ""
        took = (time.monotonic() - t0) * 1000
        said = f"; killed {len(killed)} privileged session(s): " + ", ".join(map(str, killed))
        if left:
            return said + (f"; still ending after {took:.0f} ms: " + ", ".join(map(str, left)) +
                           " (fence-check rolls back if one of them commits after all)")
        return said + f" (all ended within {took:.1f} ms)"

    def undo(self, ctx: SwapContext) -> str:
        """Writable again -- only if that leaves exactly one writable server: the target
        must be read_only first (the promote undo runs before this one)."""

        d = ctx.dialect(ctx.source)
        ro = is_read_only(ctx, ctx.source)
        configured, _running = replicates_from(ctx, ctx.source, ctx.target)
        if configured:
            # a demotion got this far (an earlier recover, or a crash in demote): undo it
            forget_source(ctx, ctx.source)
        if not ro and not configured:
            return f"{ctx.source} was writable"
        try:
            t_ro = is_read_only(ctx, ctx.target)
        except RoleSwapError:
            if "promote" in ctx.journal.last_status():
                raise  # it may be writable: never risk two writable servers
            t_ro = True  # unreachable, but it was never promoted: it cannot be writable
        if not t_ro:
            raise StepError(f"{ctx.target} is writable: not making {ctx.source} writable too",
                            remedy="run `roleswap recover`: it decides from what both servers hold")
        ctx.run(ctx.source, d.unfence())
        return f"{ctx.source} writable again" + (", replication from the target removed"
                                                 if configured else "")


class CatchUp(Step):
    """Capture the fenced primary's final position; wait until the target has applied it."""

    name = "catch-up"
    reversible = False
    intent = False  # it reads and waits; nothing to record before it
    max_rounds = 5

    def title(self, ctx: SwapContext) -> str:
        sib = ", ".join(ctx.state.get("siblings", []))
        extra = f" (and {sib})" if sib and mode(ctx).name == "filepos" else ""
        return f"wait for {ctx.target}{extra} to reach {ctx.source}'s final position exactly"

    def apply(self, ctx: SwapContext) -> str:
        m = mode(ctx)
        deadline = time.monotonic() + ctx.opts.catchup_timeout
        pos = m.read(ctx, ctx.source)
        waiters = [ctx.target]
        if m.name == "filepos":
            # siblings are repointed by coordinates, so they must stop at the same place
            waiters += list(ctx.state.get("siblings", []))
        for _round in range(self.max_rounds):
            for name in waiters:
                left = max(0.0, deadline - time.monotonic())
                reached = m.wait(ctx, name, pos, left)
                if not reached:
                    raise StepError(
                        missed(name, reached, f"{ctx.source}'s final position {_fmt(pos)}",
                               ctx.opts.catchup_timeout),
                        remedy=f"check replication on {name} (`roleswap status`); "
                               "raise --catchup-timeout if it is only slow")
            # No sleeps: the position is final when it did not move while we waited.
            again = m.read(ctx, ctx.source)
            if same(again, pos):
                ctx.remember_with_end(final_position=pos)  # its last act
                return _fmt(pos)
            pos = again
        d = ctx.dialect(ctx.source)
        raise StepError(f"{ctx.source} kept writing after {d.fence_var}: {_writers(d)} is writing",
                        remedy="stop privileged writers (only the control account may bypass "
                               "read_only), or use --kill-privileged" if d.fence_bypass_privileges
                        else f"stop the replication into {ctx.source}")


class FenceCheck(Step):
    """The last gate before the point of no return: the old primary did not move."""

    name = "fence-check"
    reversible = False
    intent = False  # it only reads

    def title(self, ctx: SwapContext) -> str:
        return f"re-read {ctx.source}'s position: unchanged since catch-up, or roll back"

    def apply(self, ctx: SwapContext) -> str:
        final = ctx.state.get("final_position")
        if final is None:
            raise StepError("no final position was recorded by catch-up",
                            remedy="run `roleswap recover`")
        now = mode(ctx).read(ctx, ctx.source)
        if not same(now, final):
            d = ctx.dialect(ctx.source)
            raise StepError(
                f"{ctx.source} took writes after the fence: its position moved from {_fmt(final)} "
                f"to {_fmt(now)} ({_writers(d)}); rolling back keeps those "
                f"acknowledged writes on {ctx.source} instead of losing them",
                remedy=f"find the writer on {ctx.source} ({_writers(d)}, or an event); revoke that "
                       "privilege from application accounts, or retry with --kill-privileged"
                if d.fence_bypass_privileges else
                f"find the writer on {ctx.source}: replication into it, or a server thread")
        return f"{ctx.source} still at {_fmt(now)}"


def _writers(d: Dialect) -> str:
    """Who can write through ``d``'s fence, in words."""
    if d.fence_bypass_privileges:
        return (f"a session of an account holding {' / '.join(d.fence_bypass_privileges)}, or "
                "replication into it")
    return f"replication into it ({d.fence_var} stops every account)"
