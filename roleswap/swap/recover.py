"""`roleswap recover`: converge an interrupted swap to ONE safe state, idempotently.

Modelled on patroni's HA loop: read a fresh topology, combine it with the journal's
*intent*, compute the single safe target state, converge to it.  The journal says
what the swap meant to do and how far it got; the servers say what is true now
(a server may have crashed and come back, a rollback may have half-run, writes
may have landed).  :func:`decide` is pure and holds every rule:

* never demote a server unless the other one ends as the sole writable primary;
* "the target took writes" counts only what the target itself originated (what
  it has that the source lacks), never what it replicated from the source;
* a cluster already healthy around the source or the target is followed, not
  swapped again;
* when it cannot decide safely (a server it needs is down, or both servers hold
  writes the other lacks) it changes nothing and lists the manual steps that fit.

Converging reuses the steps: *finish* re-applies every step from the fence on
(each ``apply`` is idempotent, and demote always enforces read_only); *roll back*
runs every undo before the point of no return in reverse (each undo checks the
servers first, so undoing what never ran is harmless).  Running recover twice
changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roleswap.config import Config
from roleswap.errors import ManualInterventionError, RoleSwapError, StepError
from roleswap.mysql.topology import Topology
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.divergence import extra_transactions, target_own_writes
from roleswap.swap.plan import build_plan, ponr_index
from roleswap.swap.runner import Printer, SwapResult, execute, rollback
from roleswap.swap.steps_db import PreSync, replica_problems
from roleswap.swap.steps_fence import CatchUp, FenceCheck
from roleswap.swap.steps_traffic import Pause
from roleswap.switch import make_switch

FINISH, ROLL_BACK, MANUAL = "finish", "roll back", "manual"


@dataclass(frozen=True)
class Facts:
    """What the decision rests on (read fresh; ``None`` = could not be known)."""

    source: str
    target: str
    passed_ponr: bool
    promote_started: bool
    source_ok: bool
    target_ok: bool
    healthy_around: str | None  # a server every other one replicates from, sole writable
    source_extra: str | None  # transactions the source has and the target lacks
    target_own: str | None  # transactions the target has and the source lacks


@dataclass(frozen=True)
class Decision:
    action: str  # FINISH | ROLL_BACK | MANUAL
    reason: str
    manual: tuple[str, ...] = ()


def decide(f: Facts) -> Decision:
    """The single safe target state for ``f`` (pure; see the module docstring)."""
    s, t = f.source, f.target
    if f.healthy_around == t:
        return Decision(FINISH, f"{t} is already the only writable server and the others "
                                "replicate from it; finishing what is left")
    if f.healthy_around == s and not f.target_own:
        return Decision(ROLL_BACK, f"{s} is the only writable server and the others replicate "
                                   "from it; restoring the rest around it")
    if not f.source_ok and not f.target_ok:
        return Decision(MANUAL, f"{s} and {t} are both unreachable", _start_both(s, t))
    if not f.source_ok:
        return Decision(MANUAL, f"{s} (the old primary) is unreachable", _start_source(s, t))
    if f.passed_ponr:
        if not f.target_ok:
            return Decision(MANUAL, f"{t} is the new primary (traffic was resumed to it) but is "
                                    "unreachable", _start_target(s, t, primary=True))
        if f.source_extra:
            return Decision(MANUAL, f"{s} took writes after traffic moved to {t}",
                            _split_brain(s, t, f.source_extra, f.target_own))
        return Decision(FINISH, "the point of no return was passed")
    if not f.target_ok:
        if f.promote_started:
            return Decision(MANUAL, f"{t} was being promoted and is unreachable: it may hold "
                                    "writes", _start_target(s, t, primary=False))
        return Decision(ROLL_BACK, f"{t} was never promoted")
    if f.target_own and f.source_extra:
        return Decision(MANUAL, f"both {s} and {t} took writes the other lacks",
                        _split_brain(s, t, f.source_extra, f.target_own))
    if f.target_own:
        return Decision(FINISH, f"{t} already took writes of its own ({f.target_own}); rolling "
                                "back would lose them")
    return Decision(ROLL_BACK, "the point of no return was not reached and "
                               f"{t} took no writes of its own")


# -- manual steps that fit the state ------------------------------------------------
_AGAIN = "then run `roleswap recover` again: it decides from what the servers hold then"
_ABANDON = ("if you repair the cluster by hand instead, run `roleswap recover --abandon` "
            "afterwards to close this swap's journal")


def _start_both(s: str, t: str) -> tuple[str, ...]:
    return (f"start {s} and {t}; each must come up read_only (read_only=ON in its config file)",
            _AGAIN, _ABANDON)


def _start_source(s: str, t: str) -> tuple[str, ...]:
    return (f"start {s}; it must come up read_only (read_only=ON in its config file)", _AGAIN,
            f"if {s} is lost for good: check with `roleswap status` that {t} applied everything, "
            f"promote {t} by hand (stop and reset its replication, SET GLOBAL read_only=OFF), "
            "point the applications at it", _ABANDON)


def _start_target(s: str, t: str, *, primary: bool) -> tuple[str, ...]:
    keep = (f"keep {s} read_only meanwhile (if it came back writable: SET GLOBAL read_only=ON "
            f"on {s}; on MySQL super_read_only=ON)") if primary else f"keep {s} read_only meanwhile"
    return (f"start {t}; it must come up read_only (read_only=ON in its config file)", keep,
            _AGAIN, _ABANDON)


def _split_brain(s: str, t: str, s_extra: str | None, t_own: str | None) -> tuple[str, ...]:
    return (f"{s} has transactions {t} lacks: {s_extra or 'unknown'}",
            f"{t} has transactions {s} lacks: {t_own or 'none'}",
            "roleswap will not choose which writes to keep",
            "pick the server to keep as primary; make the other read_only (SET GLOBAL "
            "read_only=ON; super_read_only=ON on MySQL); apply its extra transactions to the "
            "kept one by hand (mysqlbinlog "
            "of those GTIDs), then make it replicate from the kept one",
            "when `roleswap status --check-health` is clean, run `roleswap recover` again "
            "(it follows the healthy cluster and closes the journal)")


# -- reading the facts ------------------------------------------------------------------
def healthy_around(topo: Topology, names: tuple[str, ...]) -> str | None:
    """The one server among ``names`` that is the sole writable server, with every other
    reachable server replicating from it (threads running, no error) -- else None."""
    writable = [x.name for x in topo.writable()]
    if len(writable) != 1 or writable[0] not in names:
        return None
    prim = writable[0]
    for srv in topo.servers:
        if srv.name == prim or not srv.ok:
            continue
        r = srv.replica
        if r is None or topo.source_of(srv.name) != prim or not r.running or r.error:
            return None
    return prim


def gather(ctx: SwapContext, record: dict[str, Any], topo: Topology) -> Facts:
    status = ctx.journal.last_status()
    plan = build_plan(ctx)
    p = ponr_index(plan)
    ever_done = {e["name"] for e in record.get("steps", []) if e["status"] == "done"}
    passed = plan[p].name in ever_done or any(status.get(s.name) for s in plan[p + 1:])
    s_ok, t_ok = topo.by_name(ctx.source).ok, topo.by_name(ctx.target).ok
    s_extra = t_own = None
    if s_ok and t_ok:
        s_extra = extra_transactions(ctx, ctx.source, ctx.target)
        t_own = target_own_writes(ctx)
    return Facts(source=ctx.source, target=ctx.target, passed_ponr=passed,
                 promote_started="promote" in status, source_ok=s_ok, target_ok=t_ok,
                 healthy_around=healthy_around(topo, (ctx.source, ctx.target)),
                 source_extra=s_extra, target_own=t_own)


# -- converging ---------------------------------------------------------------------------
@dataclass
class RecoverReport:
    """What recover saw, decided and did."""

    swap_id: str
    source: str
    target: str
    last_step: str
    decision: Decision | None = None
    result: SwapResult | None = None
    error: RoleSwapError | None = None
    notes: list[str] = field(default_factory=list)
    declined: bool = False  # the confirm callback said no: nothing was changed
    # no interrupted swap (swap_id ""): the server reopened (action "reopen") and how
    primary: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        if not self.swap_id:  # no journal: nothing to do, a reopen, or why not
            out = {"ok": self.ok, "action": self.decision.action if self.decision else "none"}
            if self.primary is not None:
                out["primary"] = self.primary
            if self.detail is not None:
                out["detail"] = self.detail
            if self.error is not None:
                out.update(rolled_back=False, error=self.error.as_dict())
            return out
        out = {"ok": self.ok, "swap_id": self.swap_id, "from": self.source,
               "to": self.target, "last_step": self.last_step}
        if self.decision is not None:
            out.update(action=self.decision.action, reason=self.decision.reason,
                       manual_steps=list(self.decision.manual))
        if self.result is not None:
            out["steps"] = [s.as_dict() for s in self.result.steps]
        if self.error is not None:
            out["error"] = self.error.as_dict()
        return out


def load_interrupted(config: Config) -> dict[str, Any] | None:
    probe = SwapContext(config, "", "", SwapOptions())
    try:
        return probe.journal.interrupted()
    finally:
        probe.close()


def run_recover(config: Config, record: dict[str, Any], *, show: Printer,
                confirm: Callable[[RecoverReport], bool], abandon: bool = False) -> RecoverReport:
    """Decide for ``record`` (an interrupted swap) and converge, after ``confirm``."""
    opts = SwapOptions(**{k: v for k, v in record.get("options", {}).items()
                          if k in SwapOptions.__dataclass_fields__})
    ctx = SwapContext(config, record["from"], record["to"], opts, swap_id=record["swap_id"])
    last = record["steps"][-1] if record.get("steps") else {}
    rep = RecoverReport(ctx.swap_id, ctx.source, ctx.target,
                        f"{last.get('name', '-')} ({last.get('status', '-')})")
    try:
        ctx.journal.adopt(record)
        ctx.switch = make_switch(opts.switch_method)
        if abandon:
            return _abandon(ctx, rep, confirm)
        rep.decision = decide(gather(ctx, record, ctx.topology()))
        if rep.decision.action == MANUAL:
            rep.error = ManualInterventionError(
                f"recover cannot decide safely: {rep.decision.reason}; nothing was changed",
                remedy="do this by hand:\n" + "\n".join(
                    f"       {i}. {m}" for i, m in enumerate(rep.decision.manual, 1)))
            return rep
        if not confirm(rep):
            return rep
        ctx.journal.set_phase("recovering")
        if rep.decision.action == FINISH:
            rep.result = _finish(ctx, show)
            rep.error = rep.result.error
        else:
            rep.result, rep.error = _roll_back(ctx, show)
        return rep
    except RoleSwapError as e:
        rep.error = e
        return rep
    finally:
        ctx.close()


def _finish(ctx: SwapContext, show: Printer) -> SwapResult:
    """Every step from the fence on except the ones only a live swap needs (pre-sync,
    pause, catch-up and fence-check: the decision already compared both servers)."""
    skip = (PreSync, Pause, CatchUp, FenceCheck)
    todo = [s for s in build_plan(ctx) if not isinstance(s, skip)]
    return execute(ctx, todo, show, passed_ponr=True)


def _roll_back(ctx: SwapContext, show: Printer) -> tuple[SwapResult, RoleSwapError | None]:
    plan = build_plan(ctx)
    before = plan[:ponr_index(plan)]
    result = SwapResult(ctx.swap_id, ctx.source, ctx.target)
    err = rollback(ctx, before, result, show, RoleSwapError("recovered an interrupted swap"))
    if err.exit_code != 4:
        return result, err
    problem = _check_rolled_back(ctx)
    if problem:
        ctx.journal.set_phase("failed")
        return result, StepError(f"after the rollback: {problem}",
                                 remedy="see `roleswap status`; run `roleswap recover` again")
    return result, None


def _check_rolled_back(ctx: SwapContext) -> str:
    """'' once the source is the only writable server and a reachable target replicates
    from it (waiting out transient states, as verify does); else what is wrong."""
    import time

    deadline = time.monotonic() + ctx.opts.catchup_timeout
    while True:
        topo = ctx.topology()
        writable = [x.name for x in topo.writable()]
        if writable != [ctx.source]:
            return f"writable servers are {writable or 'none'}, expected only {ctx.source}"
        if not topo.by_name(ctx.target).ok:
            return ""
        problems, transient = replica_problems(ctx, topo, [ctx.target], primary=ctx.source)
        if not problems or not transient or time.monotonic() > deadline:
            return "; ".join(problems)
        time.sleep(0.02)


def _abandon(ctx: SwapContext, rep: RecoverReport,
             confirm: Callable[[RecoverReport], bool]) -> RecoverReport:
    """Close the journal without touching any server; end the swap's pause and lock."""
    from roleswap.swap.steps_traffic import Lock

    rep.decision = Decision("abandon", "closing the journal after a manual repair; "
                                       "no server is changed")
    if not confirm(rep):
        return rep
    for step in (Pause(), Lock()):
        try:
            rep.notes.append(f"{step.name}: {step.undo(ctx)}")
        except RoleSwapError as e:
            rep.notes.append(f"{step.name}: {e.message}")
    ctx.journal.set_phase("abandoned")
    return rep
