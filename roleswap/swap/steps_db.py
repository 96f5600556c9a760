"""The database steps: pre-sync, fence, catch-up, promote, demote, repoint, verify.

GTID and file/position topologies differ only in how a position is captured and
waited for, so each of those is a small table entry (:data:`POSITION_MODES`),
not a branch in every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from roleswap.errors import StepError
from roleswap.mysql.dialect import ReplicaStatus, Stmt, gtid_wait_reached, pos_wait_reached
from roleswap.swap.context import SwapContext
from roleswap.swap.step import Step


# -- positions --------------------------------------------------------------------
@dataclass(frozen=True)
class PositionMode:
    """How to read a server's binlog position and wait for a replica to apply it."""

    name: str
    read: Callable[[SwapContext, str], dict[str, Any]]
    wait: Callable[[SwapContext, str, dict[str, Any], float], bool | None]


def _read_gtid(ctx: SwapContext, name: str) -> dict[str, Any]:
    d = ctx.dialect(name)
    col = "gtid_binlog_pos" if d.flavor == "mariadb" else "gtid_executed"
    rows = ctx.query(name, f"SELECT @@GLOBAL.{col} AS pos")
    return {"gtid": str(rows[0]["pos"] or "")}


def _wait_gtid(ctx: SwapContext, name: str, pos: dict[str, Any], timeout: float) -> bool | None:
    if not pos["gtid"]:
        return True  # nothing was ever written
    rows = ctx.run(name, [ctx.dialect(name).wait_for_gtid(pos["gtid"], timeout)])
    return gtid_wait_reached(next(iter(rows[0].values())))


def _read_file_pos(ctx: SwapContext, name: str) -> dict[str, Any]:
    rows = ctx.run(name, [ctx.dialect(name).binlog_status()])
    if not rows:
        raise StepError(f"{name} has no binary log (SHOW MASTER STATUS is empty)",
                        remedy=f"enable log_bin on {name}")
    return {"file": str(rows[0]["File"]), "pos": int(rows[0]["Position"])}


def _wait_file_pos(ctx: SwapContext, name: str, pos: dict[str, Any], timeout: float) -> bool | None:
    rows = ctx.run(name, [ctx.dialect(name).wait_for_pos(pos["file"], pos["pos"], timeout)])
    return pos_wait_reached(next(iter(rows[0].values())))


POSITION_MODES = {
    "gtid": PositionMode("gtid", _read_gtid, _wait_gtid),
    "filepos": PositionMode("filepos", _read_file_pos, _wait_file_pos),
}


def mode(ctx: SwapContext) -> PositionMode:
    return POSITION_MODES[ctx.state.get("mode", "gtid")]


def replica_rows(ctx: SwapContext, name: str) -> list[dict[str, Any]]:
    return ctx.run(name, [ctx.dialect(name).replica_status()])


def replication_host(ctx: SwapContext, name: str) -> str:
    """The host other servers use to replicate from ``name`` (servers.<n>.replication_host)."""
    s = ctx.server(name)
    return str(s.extra.get("replication_host", s.host))


def replicates_from(ctx: SwapContext, name: str, source: str) -> tuple[bool, bool]:
    """(configured to replicate from ``source``, both threads running)."""
    src = ctx.server(source)
    host = replication_host(ctx, source)
    for row in replica_rows(ctx, name):
        r = ReplicaStatus.from_row(row)
        if r.source_host == host and r.source_port == src.port:
            return True, r.running
    return False, False


def point_to(ctx: SwapContext, name: str, source: str, start_at: dict[str, Any] | None) -> list[Stmt]:
    """Statements making ``name`` a replica of ``source`` (by GTID, or at ``start_at``)."""
    d = ctx.dialect(name)
    src = ctx.server(source)
    host = replication_host(ctx, source)
    repl = ctx.config.replication
    if mode(ctx).name == "gtid":
        return d.point_to_source_gtid(host, src.port, repl.user, repl.password.reveal())
    if start_at is None:
        raise StepError(f"no binlog coordinates recorded to point {name} at {source}",
                        remedy="run `roleswap recover` or repoint it by hand")
    return d.point_to_source_pos(host, src.port, repl.user, repl.password.reveal(),
                                 start_at["file"], int(start_at["pos"]))


# -- steps --------------------------------------------------------------------------
class PreSync(Step):
    """Wait (traffic still flowing) until the target is close, so the paused catch-up is short."""

    name = "pre-sync"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        return f"wait for {ctx.target} to apply what {ctx.source} has now (writes still flow)"

    def apply(self, ctx: SwapContext) -> str:
        m = mode(ctx)
        pos = m.read(ctx, ctx.source)
        reached = m.wait(ctx, ctx.target, pos, ctx.opts.catchup_timeout)
        if not reached:
            raise StepError(f"{ctx.target} did not reach {ctx.source}'s position within "
                            f"{ctx.opts.catchup_timeout:g}s while writes were flowing",
                            remedy="let it catch up (see `roleswap status`) or raise --catchup-timeout")
        return "caught up"


class Fence(Step):
    """Make the old primary refuse writes (bounded: a blocked read_only gives up safely)."""

    name = "fence"

    def title(self, ctx: SwapContext) -> str:
        return f"set read_only on {ctx.source} (lock_wait_timeout {ctx.opts.fence_timeout}s)"

    def apply(self, ctx: SwapContext) -> str:
        try:
            ctx.run(ctx.source, ctx.dialect(ctx.source).fence(ctx.opts.fence_timeout))
        except Exception as e:
            raise StepError(f"could not fence {ctx.source}: {e}",
                            remedy="a long statement or LOCK TABLES holds it; retry when it ends, "
                                   "or raise --fence-timeout") from None
        return f"{ctx.source} read_only"

    def undo(self, ctx: SwapContext) -> str:
        ctx.run(ctx.source, ctx.dialect(ctx.source).unfence())
        return f"{ctx.source} writable again"


class CatchUp(Step):
    """Capture the fenced primary's final position; wait until the target has applied it."""

    name = "catch-up"
    reversible = False
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
                if not m.wait(ctx, name, pos, left):
                    raise StepError(
                        f"{name} did not reach {ctx.source}'s final position {_fmt(pos)} "
                        f"within {ctx.opts.catchup_timeout:g}s",
                        remedy=f"check replication on {name} (`roleswap status`); "
                               "raise --catchup-timeout if it is only slow")
            # No sleeps: the position is final when it did not move while we waited.
            again = m.read(ctx, ctx.source)
            if again == pos:
                ctx.remember(final_position=pos)
                return _fmt(pos)
            pos = again
        raise StepError(f"{ctx.source} kept writing after read_only (an account with "
                        "READ ONLY ADMIN/SUPER is writing)",
                        remedy="stop privileged writers; only the control account may bypass read_only")


class Promote(Step):
    """Stop replication on the target, forget its source, make it writable."""

    name = "promote"

    def title(self, ctx: SwapContext) -> str:
        return f"promote {ctx.target}: stop + reset replication, read_only off"

    def apply(self, ctx: SwapContext) -> str:
        d = ctx.dialect(ctx.target)
        ctx.run(ctx.target, d.reset_replication())
        # The new primary's coordinates before its first write: where file/pos replicas start.
        ctx.remember(promoted_at=_read_file_pos(ctx, ctx.target))
        ctx.run(ctx.target, d.unfence())
        return f"{ctx.target} writable"

    def undo(self, ctx: SwapContext) -> str:
        d = ctx.dialect(ctx.target)
        ctx.run(ctx.target, d.read_only())
        configured, running = replicates_from(ctx, ctx.target, ctx.source)
        if not configured:
            ctx.run(ctx.target, d.stop_replication())
            ctx.run(ctx.target, point_to(ctx, ctx.target, ctx.source, ctx.state.get("final_position")))
        if not running:
            ctx.run(ctx.target, d.start_replication())
        return f"{ctx.target} read_only, replicating from {ctx.source} again"


class Demote(Step):
    """Make the old primary a replica of the new one (MASTER_DEMOTE_TO_SLAVE on MariaDB 10.10+)."""

    name = "demote"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        return f"make {ctx.source} a replica of {ctx.target}"

    def apply(self, ctx: SwapContext) -> str:
        d = ctx.dialect(ctx.source)
        configured, running = replicates_from(ctx, ctx.source, ctx.target)
        if configured and running:
            return "already replicating"
        ctx.run(ctx.source, d.read_only())  # it is already; keep it so on a re-run
        if not configured:
            ctx.run(ctx.source, d.stop_replication())
            if mode(ctx).name == "gtid":
                src = ctx.server(ctx.target)
                repl = ctx.config.replication
                stmts = d.demote_to_replica(replication_host(ctx, ctx.target), src.port,
                                            repl.user, repl.password.reveal())
            else:
                stmts = point_to(ctx, ctx.source, ctx.target, ctx.state.get("promoted_at"))
            ctx.run(ctx.source, stmts)
        ctx.run(ctx.source, d.start_replication())
        return f"{ctx.source} replicates from {ctx.target}"


class Repoint(Step):
    """Point the old primary's other replicas at the new primary."""

    name = "repoint"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        sib = ctx.state.get("siblings", [])
        return f"repoint {', '.join(sib)} to {ctx.target}" if sib else "no other replicas to repoint"

    def apply(self, ctx: SwapContext) -> str:
        done = []
        for name in ctx.state.get("siblings", []):
            d = ctx.dialect(name)
            configured, running = replicates_from(ctx, name, ctx.target)
            if configured and running:
                continue
            if not configured:
                ctx.run(name, d.stop_replication())
                ctx.run(name, point_to(ctx, name, ctx.target, ctx.state.get("promoted_at")))
            ctx.run(name, d.start_replication())
            done.append(name)
        return ", ".join(done) or "nothing to do"


class Verify(Step):
    """Every replica follows the new primary and catches up; exactly one writable server."""

    name = "verify"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        return f"check: only {ctx.target} writable, all replicas running and caught up"

    def apply(self, ctx: SwapContext) -> str:
        m = mode(ctx)
        pos = m.read(ctx, ctx.target)
        replicas = [ctx.source, *ctx.state.get("siblings", [])]
        for name in replicas:
            if not m.wait(ctx, name, pos, ctx.opts.catchup_timeout):
                raise StepError(f"{name} did not catch up with {ctx.target}",
                                remedy=f"check replication on {name} (`roleswap status`)")
        # Right after START SLAVE the IO thread is "Preparing"/"Connecting" for a few ms
        # while the GTID wait above can already succeed: re-read until the threads are
        # up, failing at once only on a definite error.
        deadline = time.monotonic() + ctx.opts.catchup_timeout
        while True:
            topo = ctx.topology()
            writable = [s.name for s in topo.writable()]
            if writable != [ctx.target]:
                raise StepError(f"writable servers are {writable}, expected only {ctx.target}",
                                remedy="set read_only=1 on every server except the new primary")
            problems, transient = _replica_problems(ctx, topo, replicas)
            if not problems:
                break
            if not transient or time.monotonic() > deadline:
                raise StepError("replication is not healthy on " + "; ".join(problems),
                                remedy="see `roleswap status`; run `roleswap recover` to retry")
            time.sleep(0.01)
        return f"{len(replicas)} replica(s) at {_fmt(pos)}"


def _replica_problems(ctx: SwapContext, topo: Any, replicas: list[str]) -> tuple[list[str], bool]:
    """(what is wrong, whether all of it may still resolve by itself)."""
    problems: list[str] = []
    transient = True
    for name in replicas:
        r = topo.by_name(name).replica
        src = topo.source_of(name)
        if r is not None and src == ctx.target and r.running:
            continue
        state = "not a replica" if r is None else (r.error or f"IO {r.io_state}, SQL "
                                                   f"{'running' if r.sql_running else 'stopped'}")
        problems.append(f"{name} (source {src}, {state})")
        if r is None or r.error or not r.sql_running or r.io_state == "No":
            transient = False
    return problems, transient


def _fmt(pos: dict[str, Any]) -> str:
    if "gtid" in pos:
        return pos["gtid"] or "(empty)"
    return f"{pos['file']}:{pos['pos']}"
