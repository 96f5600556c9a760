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
        return self._span("pause.start", "resume.end")

    @property
    def write_block_ms(self) -> float | None:
        """No writable primary: fence started -> new primary writable."""
        return self._span("fence.start", "promote.end")

    @property
    def total_ms(self) -> float | None:
        return self._span("start", "end")

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
        if self.error is not None:
            out["error"] = self.error.as_dict()
        return out


Printer = Callable[[StepResult], None]


def execute(ctx: SwapContext, plan: list[Step], show: Printer,
            passed_ponr: bool = False) -> SwapResult:
    """Run ``plan`` (journal already begun).  Never raises: the outcome is in the result.

    ``passed_ponr``: the point of no return is already behind us (recover finishing a
    swap), so a failure must never roll back.
    """
    res = SwapResult(ctx.swap_id, ctx.source, ctx.target)
    res.marks["start"] = time.perf_counter()
    done: list[Step] = []
    for step in plan:
        ctx.journal.step(step.name, "running")
        t0 = time.perf_counter()
        res.marks[f"{step.name}.start"] = t0
        applied = False
        try:
            ctx.failpoint(step.name, "before")
            detail = step.apply(ctx)
            applied = True
            t1 = time.perf_counter()
            # journaled as done before anything else can happen (a crash right after
            # the point of no return must be finished by recover, not rolled back)
            ctx.journal.step(step.name, "done", (t1 - t0) * 1000)
            ctx.failpoint(step.name, "after")
        except (Exception, KeyboardInterrupt) as e:
            ms = (time.perf_counter() - t0) * 1000
            err = e if isinstance(e, RoleSwapError) else RoleSwapError(
                "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}")
            ctx.journal.step(step.name, "failed", ms, err.message)
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
    ctx.journal.set_phase("done")
    return _finished(res, ctx)


def _finished(res: SwapResult, ctx: SwapContext) -> SwapResult:
    res.marks["end"] = time.perf_counter()
    res.notes += ctx.notes
    res.vip_move_ms = ctx.state.get("vip_move_ms")
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
