"""The database steps: pre-sync, demote, repoint, verify (the fence and its checks are in
:mod:`roleswap.swap.steps_fence`, promote and detach in :mod:`roleswap.swap.steps_promote`;
positions in :mod:`roleswap.swap.positions`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from roleswap.errors import StepError
from roleswap.mysql.dialect import ReplicaStatus, Stmt
from roleswap.swap.context import SwapContext
from roleswap.swap.positions import POSITION_MODES, PositionMode, missed, mode
from roleswap.swap.positions import fmt as _fmt
from roleswap.swap.replica_ops import (
    follow,
    point_to,
    replica_rows,
    replicates_from,
    replication_address,
)
from roleswap.swap.step import Step
from roleswap.swap.steps_traffic import prepare_pause

__all__ = ["POSITION_MODES", "Demote", "PositionMode", "PreSync", "Repoint", "Verify",
           "mode", "point_to", "replica_rows", "replicates_from", "replication_address"]


# -- steps --------------------------------------------------------------------------
class PreSync(Step):
    """Wait (traffic still flowing) until the target is close, so the paused catch-up is
    short; then let the switch method prepare (reads kept out of the pause window)."""

    name = "pre-sync"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        return f"wait for {ctx.target} to apply what {ctx.source} has now (writes still flow)"

    # Converged when one round's wait took at most CLOSE_S: the backlog the paused
    # catch-up inherits is then ~CLOSE_S of writes.  Under heavy writes one wait is not
    # enough (lag builds again while we waited); a replica that applies slower than the
    # primary writes never converges, and then ROUNDS bounds the effort.
    CLOSE_S = 0.005
    ROUNDS = 20

    def apply(self, ctx: SwapContext) -> str:
        if ctx.switch is not None:
            ctx.switch.prepare(ctx)
        m = mode(ctx)
        deadline = time.monotonic() + ctx.opts.catchup_timeout
        waited = 0.0
        for rnd in range(1, self.ROUNDS + 1):
            pos = m.read(ctx, ctx.source)
            t0 = time.monotonic()
            left = max(0.0, deadline - t0)
            reached = m.wait(ctx, ctx.target, pos, left)
            waited = time.monotonic() - t0
            if reached is False and rnd > 1:  # it did reach an earlier position: close enough
                prepare_pause(ctx)
                return (f"close: still behind after {rnd} rounds and {ctx.opts.catchup_timeout:g}s "
                        "(the paused catch-up waits the rest)")
            if not reached:
                raise StepError(missed(ctx.target, reached, f"{ctx.source}'s position",
                                       ctx.opts.catchup_timeout) + " while writes were flowing",
                                remedy="let it catch up (see `roleswap status`) or raise "
                                       "--catchup-timeout" if reached is not None else
                                f"start replication on {ctx.target} (see `roleswap status`)")
            if waited <= self.CLOSE_S:
                prepare_pause(ctx)
                return f"caught up ({rnd} round{'s' if rnd > 1 else ''}, last wait {waited * 1000:.1f} ms)"
        prepare_pause(ctx)
        return (f"close: the last of {self.ROUNDS} rounds waited {waited * 1000:.0f} ms (the target "
                "applies about as fast as the primary writes; the paused catch-up waits the rest)")


class Demote(Step):
    """Make the old primary a replica of the new one (MASTER_DEMOTE_TO_SLAVE on MariaDB 10.10+)."""

    name = "demote"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        return f"make {ctx.source} a replica of {ctx.target}"

    def apply(self, ctx: SwapContext) -> str:
        d = ctx.dialect(ctx.source)
        # Always, even when it already replicates: a server restarted with a config
        # that lacks read_only comes back writable (and then two servers are).
        ctx.run(ctx.source, d.read_only())
        configured, running = replicates_from(ctx, ctx.source, ctx.target)
        if configured and running:
            return f"{ctx.source} read_only, already replicating from {ctx.target}"

        def stmts() -> list[Stmt]:
            if mode(ctx).name != "gtid":
                return point_to(ctx, ctx.source, ctx.target, ctx.state.get("promoted_at"))
            host, port = replication_address(ctx, ctx.target)
            repl = ctx.config.replication
            return d.demote_to_replica(host, port, repl.user, repl.password.reveal())

        if mode(ctx).name != "gtid":
            _detach_siblings(ctx)
        how = follow(ctx, ctx.source, ctx.target, stmts)
        return f"{ctx.source} replicates from {ctx.target}{how}"


class Repoint(Step):
    """Point the old primary's other replicas at the new primary.

    A sibling whose replication was stopped at preflight (``stopped_siblings`` in
    the journal state: name -> the threads that ran then) is repointed but only
    those threads are started again: stopped on purpose, it stays stopped.
    """

    name = "repoint"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        sib = ctx.state.get("siblings", [])
        if not sib:
            return "no other replicas to repoint"
        kept = [n for n in sib if n in stopped_siblings(ctx)]
        extra = f" ({', '.join(kept)}: replication left stopped, as found)" if kept else ""
        return f"repoint {', '.join(sib)} to {ctx.target}{extra}"

    def apply(self, ctx: SwapContext) -> str:
        siblings = list(ctx.state.get("siblings", []))
        stopped = stopped_siblings(ctx)
        for name in siblings:
            ctx.dialect(name)  # asked once, before the threads (the cache is not shared-safe)
        # Each sibling on its own connection, all at once: 6 replicas take as long as one.
        # Every sibling is tried even if another fails (none is left half-done for no reason).
        with ThreadPoolExecutor(max_workers=max(1, len(siblings))) as pool:
            futures = [pool.submit(self._one, ctx, name, stopped) for name in siblings]
            outcomes = [f.exception() or f.result() for f in futures]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if len(failed) == 1:
            raise failed[0]
        if failed:
            first = failed[0]
            raise StepError("; ".join(getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                                      for e in failed),
                            remedy=getattr(first, "remedy", "") or "see `roleswap status`")
        done = [o for o in outcomes if isinstance(o, str) and o]
        return ", ".join(done) or "nothing to do"

    @staticmethod
    def _one(ctx: SwapContext, name: str, stopped: dict[str, list[str]]) -> str:
        d = ctx.dialect(name)
        configured, running = replicates_from(ctx, name, ctx.target)
        if name not in stopped and configured and running:
            return ""
        how = follow(ctx, name, ctx.target, _pointer(ctx, name), start=name not in stopped)
        if name not in stopped:
            return name + how
        threads = stopped[name]
        for thread in threads:  # idempotent: starting a running thread only warns
            ctx.run(name, [(f"{d.start_replica_sql} {_THREAD_KEYWORD[thread]}", ())])
        return (f"{name} (left stopped)" if not threads
                else f"{name} ({'+'.join(t.upper() for t in threads)} only)")


class Verify(Step):
    """Every replica follows the new primary and catches up; exactly one writable server.

    Two kinds of sibling are not waited for: one left stopped by Repoint (it must be
    repointed, not running), and one with a delay (SQL_Delay > 0), accepted once it
    runs and its IO thread has RECEIVED the new primary's position; it applies it
    ``SQL_Delay`` s later.  Both are reported in the swap's notes.
    """

    name = "verify"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        kept = list(stopped_siblings(ctx))
        extra = f" (left stopped: {', '.join(kept)}, repointed only)" if kept else ""
        return f"check: only {ctx.target} writable, all replicas running and caught up{extra}"

    def apply(self, ctx: SwapContext) -> str:
        m = mode(ctx)
        pos = m.read(ctx, ctx.target)
        stopped = stopped_siblings(ctx)
        replicas = [ctx.source, *ctx.state.get("siblings", [])]
        before = ctx.topology()
        delays = {n: r.sql_delay for n in replicas if n not in stopped
                  for r in [before.by_name(n).replica] if r is not None and r.sql_delay > 0}
        for name in replicas:
            if name in stopped or name in delays:
                continue
            reached = _wait_started(ctx, m, name, pos)
            if not reached:
                raise StepError(missed(name, reached, f"{ctx.target}'s position {_fmt(pos)}",
                                       ctx.opts.catchup_timeout),
                                remedy=f"check replication on {name} (`roleswap status`)")
        # Right after START SLAVE the IO thread is "Preparing"/"Connecting" for a few ms
        # while the GTID wait above can already succeed (and a delayed replica has yet to
        # receive the position): re-read until the threads are up, failing at once only
        # on a definite error.
        deadline = time.monotonic() + ctx.opts.catchup_timeout
        while True:
            topo = ctx.topology()
            writable = [s.name for s in topo.writable()]
            if writable != [ctx.target]:
                raise StepError(f"writable servers are {writable}, expected only {ctx.target}",
                                remedy="set read_only=1 on every server except the new primary")
            problems, transient = replica_problems(ctx, topo, replicas, pos, stopped, delays)
            if not problems:
                break
            if not transient or time.monotonic() > deadline:
                raise StepError("replication is not healthy on " + "; ".join(problems),
                                remedy="see `roleswap status`; run `roleswap recover` to retry")
            time.sleep(0.01)
        for name, delay in delays.items():
            ctx.notes.append(f"{name} applies with a delay (SQL_Delay={delay}s): it has received "
                             f"{ctx.target}'s position {_fmt(pos)} and applies it within ~{delay}s")
        for name in stopped:
            ctx.notes.append(f"{name} was repointed to {ctx.target} but its replication was left "
                             f"stopped, as it was before the swap ({ctx.dialect(name).start_replica_sql} "
                             f"on {name} resumes it)")
        caught_up = len(replicas) - len(delays) - len(stopped)
        extra = "".join([f"; {', '.join(delays)} delayed (received)" if delays else "",
                         f"; {', '.join(stopped)} left stopped" if stopped else ""])
        return f"{caught_up} replica(s) at {_fmt(pos)}{extra}"


def _wait_started(ctx: SwapContext, m: Any, name: str, pos: dict[str, Any]) -> bool | None:
    """``m.wait`` on ``name``, tolerating a replica whose threads are still starting.

    MASTER_POS_WAIT / SOURCE_POS_WAIT return NULL until the SQL thread has really started:
    on a loaded box that can be several milliseconds after the START SLAVE of Demote /
    Repoint returned (measured: 6 failed swaps of 8 in file/position mode under load).
    NULL is final only when the server is no replica or reports an SQL error, or once the
    catch-up timeout has run out (Verify waits only for replicas it started itself)."""
    deadline = time.monotonic() + ctx.opts.catchup_timeout
    while True:
        left = max(0.1, deadline - time.monotonic())
        reached = m.wait(ctx, name, pos, left)
        if reached is not None or time.monotonic() >= deadline:
            return reached
        r = ctx.topology().by_name(name).replica
        if r is not None and r.last_sql_errno:  # say the real cause, not "not replicating"
            raise StepError(f"{name}'s replication stopped with SQL error {r.last_sql_errno}: "
                            f"{r.last_sql_error[:300]}",
                            remedy=f"repair replication on {name} (`roleswap status`), then "
                                   "run `roleswap recover`")
        if r is None:
            return reached
        time.sleep(0.01)


def replica_problems(ctx: SwapContext, topo: Any, replicas: list[str],
                      pos: dict[str, Any] | None = None,
                      stopped: dict[str, list[str]] | None = None,
                      delays: dict[str, int] | None = None,
                      primary: str | None = None) -> tuple[list[str], bool]:
    """(what is wrong, whether all of it may still resolve by itself).

    Every replica must replicate from ``primary`` (default: the target); ``stopped`` ones need nothing more,
    the others must run both threads, and ``delays`` ones must also have received
    ``pos`` (a transient problem until they have).
    """
    problems: list[str] = []
    transient = True
    stopped, delays = stopped or {}, delays or {}
    primary = primary or ctx.target
    for name in replicas:
        r = topo.by_name(name).replica
        src = topo.source_of(name)
        if name in stopped:
            if r is None or src != primary:
                problems.append(f"{name} (source {src}: not repointed to {primary})")
                transient = False
            continue
        if r is not None and src == primary and r.running:
            if name not in delays or pos is None or _received(topo.by_name(name), r, pos):
                continue
            problems.append(f"{name} (delayed {delays[name]}s: has not yet received {_fmt(pos)})")
            continue
        state = "not a replica" if r is None else (r.error or f"IO {r.io_state}, SQL "
                                                   f"{'running' if r.sql_running else 'stopped'}")
        problems.append(f"{name} (source {src}, {state})")
        if r is None or not r.sql_running or r.io_state == "No" or (r.error and not r.reconnecting):
            transient = False
    return problems, transient


_THREAD_KEYWORD = {"io": "IO_THREAD", "sql": "SQL_THREAD"}


def _detach_siblings(ctx: SwapContext) -> None:
    """File/position mode, before the old primary replicates from the new one: stop the
    siblings that still replicate from it.  Otherwise it relays the new primary's first
    writes to them (log_slave_updates), and Repoint, which points them at the new
    primary's position from before those writes, makes them apply the writes twice
    (error 1062, found under load: 6 swaps of 8).  GTID replicas skip what they hold."""
    for name in ctx.state.get("siblings", []):
        configured, _running = replicates_from(ctx, name, ctx.source)
        if configured:
            ctx.run(name, ctx.dialect(name).stop_replication())


def _pointer(ctx: SwapContext, name: str) -> Callable[[], list[Stmt]]:
    """Statements pointing sibling ``name`` at the target (built only when needed)."""
    return lambda: point_to(ctx, name, ctx.target, ctx.state.get("promoted_at"))


def stopped_siblings(ctx: SwapContext) -> dict[str, list[str]]:
    """Siblings found with replication stopped at preflight -> the threads that ran then
    (a plain list of names means: none ran)."""
    recorded = ctx.state.get("stopped_siblings") or {}
    if isinstance(recorded, list):
        return {str(n): [] for n in recorded}
    return {str(k): list(v) for k, v in recorded.items()}


def _received(srv: Any, r: ReplicaStatus, pos: dict[str, Any]) -> bool:
    """Has ``srv``'s IO thread received the target's position ``pos`` (applied or not)?"""
    if "gtid" not in pos:
        return r.received_file_pos(str(pos["file"]), int(pos["pos"]))
    if not pos["gtid"]:
        return True
    return r.received_gtid(srv.dialect.parse_gtid(pos["gtid"]))
