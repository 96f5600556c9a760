"""Run a plan: journal each step before and after, time it, and on failure either
roll back (before the point of no return) or stop and say how to finish (after).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roleswap.errors import (
    AfterPointOfNoReturnError,
    RoleSwapError,
    RollbackIncompleteError,
    RolledBackError,
)
from roleswap.swap import redis_failover
from roleswap.swap.context import SwapContext
from roleswap.swap.step import Step


@dataclass
class StepResult:
    name: str
    status: str  # done | failed | undone | undo-failed | skipped
    ms: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "ms": round(self.ms, 2),
                "detail": self.detail}


# window name -> (start mark, end mark); see SwapResult.pause_ms / write_block_ms
WINDOWS = {"pause": ("pause.start", "resume.end"), "write_block": ("fence.start", "promote.end"),
           "swap": ("start", "end")}


@dataclass
class SwapResult:
    swap_id: str
    source: str
    target: str
    steps: list[StepResult] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # perf_counter timestamps
    rolled_back: bool = False
    error: RoleSwapError | None = None
    notes: list[str] = field(default_factory=list)
    vip_move_ms: float | None = None  # vip method: VIP removal -> a new connection reached --to
    haproxy_move_ms: float | None = None  # haproxy: old entry in maint -> new connections reach --to

    @property
    def ok(self) -> bool:
        return self.error is None

    def _span(self, start: str, end: str) -> float | None:
        if start in self.marks and end in self.marks:
            return (self.marks[end] - self.marks[start]) * 1000
        return None

    @property
    def pause_ms(self) -> float | None:
        """Traffic paused: pause command sent -> resume command acknowledged."""
        return self._span(*WINDOWS["pause"])

    @property
    def write_block_ms(self) -> float | None:
        """No writable primary: fence started -> new primary writable."""
        return self._span(*WINDOWS["write_block"])

    @property
    def total_ms(self) -> float | None:
        return self._span(*WINDOWS["swap"])

    def as_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        out: dict[str, Any] = {
            "ok": self.ok, "swap_id": self.swap_id, "from": self.source, "to": self.target,
            "steps": [s.as_dict() for s in self.steps], "pause_ms": r(self.pause_ms),
            "write_block_ms": r(self.write_block_ms), "total_ms": r(self.total_ms),
            "rolled_back": self.rolled_back, "notes": self.notes,
        }
        if self.vip_move_ms is not None:
            out["vip_move_ms"] = self.vip_move_ms
        if self.haproxy_move_ms is not None:
            out["haproxy_move_ms"] = self.haproxy_move_ms
        # Absolute windows for timelines: perf_counter is CLOCK_MONOTONIC on Linux, the
        # same clock as time.monotonic() in any other process of this host.
        windows = {name: [round(self.marks[a], 6), round(self.marks[b], 6)]
                   for name, (a, b) in WINDOWS.items() if a in self.marks and b in self.marks}
        if windows:
            out["windows"] = windows
        if self.error is not None:
            out["error"] = self.error.as_dict()
        return out


Printer = Callable[[StepResult], None]
Entry = tuple[str, str, float | None, str | None]  # a journal step entry: name, status, ms, error


def execute(ctx: SwapContext, plan: list[Step], show: Printer,
            passed_ponr: bool = False) -> SwapResult:
    """Run ``plan`` (journal already begun).  Never raises: the outcome is in the result.

    ``passed_ponr``: the point of no return is already behind us (recover finishing a
    swap), so a failure must never roll back.
    """
    res = SwapResult(ctx.swap_id, ctx.source, ctx.target)
    res.marks["start"] = time.perf_counter()
    redis_failover.remember_master(ctx)
    done: list[Step] = []
    ahead: str | None = None  # the step already journaled as running with the last "done"
    unwritten: list[Entry] = []  # a "done" deferred to the end of the next (read-only) step
    for i, step in enumerate(plan):
        if step.intent and ahead != step.name:
            ctx.journal.steps([*unwritten, (step.name, "running", None, None)])
            unwritten = []
        ahead = None
        t0 = time.perf_counter()
        res.marks[f"{step.name}.start"] = t0
        applied = False
        try:
            ctx.failpoint(step.name, "before")
            detail = step.apply(ctx)
            applied = True
            t1 = time.perf_counter()
            # Journaled as done before anything else can happen (a crash right after
            # the point of no return must be finished by recover, not rolled back),
            # together with the next step's start: one write instead of two, the state
            # a crash right after the next step's own "running" write leaves.  Before
            # a step that changes nothing (no intent) the write waits for that step's
            # end: a crash inside it leaves what a crash just before this write leaves.
            unwritten.append((step.name, "done", (t1 - t0) * 1000, None))
            nxt = plan[i + 1] if i + 1 < len(plan) else None
            if nxt is None or nxt.intent or step.ponr:
                if nxt is not None and nxt.intent:
                    ahead = nxt.name
                    unwritten.append((ahead, "running", None, None))
                ctx.journal.steps(unwritten)
                unwritten = []
            ctx.failpoint(step.name, "after")
        except (Exception, KeyboardInterrupt) as e:
            if ahead is not None:  # its turn will not come: not "running" in the record
                ctx.journal.withdraw(ahead)
                ahead = None
            ms = (time.perf_counter() - t0) * 1000
            err = e if isinstance(e, RoleSwapError) else RoleSwapError(
                "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}")
            # a deferred "done" is a fact: it goes with the failure
            ctx.journal.steps([*unwritten, (step.name, "failed", ms, err.message)])
            unwritten = []
            res.steps.append(StepResult(step.name, "failed", ms, err.message))
            show(res.steps[-1])
            if passed_ponr or (applied and step.ponr):
                ctx.journal.set_phase("failed")
                res.error = after_ponr_error(ctx, plan, step, err)
            else:
                res.error = rollback(ctx, [*done, step], res, show, err)
            return _finished(res, ctx)
        res.marks[f"{step.name}.end"] = t1
        ms = (t1 - t0) * 1000
        res.steps.append(StepResult(step.name, "done", ms, detail))
        show(res.steps[-1])
        done.append(step)
        passed_ponr = passed_ponr or step.ponr
        if step.ponr:  # traffic flows again: a Redis failover must not keep a pause or
            redis_failover.follow(ctx)  # an old endpoint where the apps now look
    ctx.journal.set_phase("done")
    return _finished(res, ctx)


def _finished(res: SwapResult, ctx: SwapContext) -> SwapResult:
    redis_failover.follow(ctx)
    res.marks["end"] = time.perf_counter()
    res.notes += ctx.notes
    res.vip_move_ms = ctx.state.get("vip_move_ms")
    res.haproxy_move_ms = ctx.state.get("haproxy_move_ms")
    return res


def rollback(ctx: SwapContext, steps: list[Step], res: SwapResult, show: Printer,
             cause: RoleSwapError) -> RoleSwapError:
    """Undo ``steps`` in reverse order.  Returns the error to report."""
    failed_undo = []
    for step in reversed(steps):
        if not step.reversible:
            continue
        t0 = time.perf_counter()
        try:
            detail = step.undo(ctx)
            status = "undone"
        except Exception as e:
            detail = e.message if isinstance(e, RoleSwapError) else f"{type(e).__name__}: {e}"
            status = "undo-failed"
            failed_undo.append(step.name)
        ms = (time.perf_counter() - t0) * 1000
        ctx.journal.step(step.name, status, ms, None if status == "undone" else detail)
        res.steps.append(StepResult(step.name, status, ms, detail))
        show(res.steps[-1])
    if failed_undo:
        # Still before the point of no return: traffic was never resumed to the target.
        ctx.journal.set_phase("failed")
        undone = [s.name for s in steps if s.reversible and s.name not in failed_undo]
        return RollbackIncompleteError(
            f"{cause.message}\n  rolling back failed at: {', '.join(failed_undo)}"
            + (f" (undone: {', '.join(undone)})" if undone else "")
            + f"; traffic was never resumed to {ctx.target}",
            remedy=f"fix what the failed undo reports, then run `roleswap -c {ctx.config.source} "
                   "recover`: it reads the servers and finishes the rollback (or the swap, if "
                   f"{ctx.target} has taken writes of its own)")
    problem = _source_not_writable(ctx)
    if problem:
        # Every undo ran, yet the old primary does not take writes: it crashed and came
        # back read-only (as its config should make it).  Not "the primary again".
        ctx.journal.set_phase("failed")
        return RollbackIncompleteError(
            f"{cause.message}\n  rolled back, but {problem}; no server takes writes",
            remedy=f"when {ctx.source} answers, run `roleswap -c {ctx.config.source} recover`: "
                   f"it makes {ctx.source} writable again once {ctx.target} is read-only")
    ctx.journal.set_phase("rolled_back")
    res.rolled_back = True
    return RolledBackError(f"{cause.message} (rolled back: {ctx.source} is the primary again)",
                           remedy=cause.remedy or "see the step that failed above")


def _source_not_writable(ctx: SwapContext) -> str:
    """'' when --from answers and is writable; else what is wrong (read on a fresh
    connection: the swap's own one may have died with a restarted server)."""
    from roleswap.mysql.conn import connect, query

    try:
        conn = connect(ctx.server(ctx.source), ctx.config.mysql, timeout=ctx.config.connect_timeout,
                       tls=ctx.config.tls)
    except RoleSwapError as e:
        return f"{ctx.source} is unreachable ({e.message})"
    try:
        ro = query(conn, "SELECT @@GLOBAL.read_only AS ro")[0]["ro"]
    except Exception as e:  # a broken connection is as good as unreachable here
        return f"{ctx.source} did not answer ({type(e).__name__})"
    finally:
        conn.close()
    return f"{ctx.source} is read-only (restarted?)" if int(ro) else ""


def after_ponr_error(ctx: SwapContext, plan: list[Step], failed: Step,
                     cause: RoleSwapError) -> RoleSwapError:
    i = plan.index(failed)
    remaining = [s.title(ctx) for s in plan[i:]]
    lines = "\n".join(f"    - {t}" for t in remaining)
    finish = f"run `roleswap -c {ctx.config.source} recover` to finish"
    if cause.remedy and "recover" in cause.remedy:
        remedy = cause.remedy  # it already says to run recover
    elif cause.remedy:
        remedy = f"{cause.remedy}; then {finish}"
    else:
        remedy = finish
    return AfterPointOfNoReturnError(
        f"{cause.message}\n  {ctx.target} is the primary and traffic is flowing; "
        f"not yet done:\n{lines}", remedy=remedy)
