"""A swap from start to end, as the engine runs it: prepare (never writes), then run.

:func:`prepare` reads the cluster, runs every preflight check and builds the plan;
nothing is written anywhere.  :func:`run` takes the cluster lock (before the journal:
a swap that lost the race must not overwrite the winner's journal), begins the
journal and executes the plan, rolling back or finishing as
:mod:`roleswap.swap.runner` decides.  Neither prints: results are returned and each
finished step is handed to ``show``.  The callers are :mod:`roleswap.api` (for the
CLI, the pytest plugin and users' runbooks alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from roleswap.coord import client as redis_client
from roleswap.errors import PreflightError
from roleswap.swap.check import Check
from roleswap.swap.context import SwapContext
from roleswap.swap.plan import build_plan
from roleswap.swap.preflight import run_preflight
from roleswap.swap.runner import Printer, SwapResult, execute
from roleswap.swap.step import Step
from roleswap.swap.steps_traffic import cluster_lock


@dataclass(frozen=True)
class PlanLine:
    """One step of the plan as the user sees it (``--dry-run``)."""

    step: str
    title: str
    undo: bool  # False: the step needs no undo

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "title": self.title, "undo": self.undo}


@dataclass(frozen=True)
class Prepared:
    """Preflight's verdict and, when it passed, the plan."""

    checks: tuple[Check, ...]
    steps: tuple[Step, ...]
    plan: tuple[PlanLine, ...]
    mode: str  # "gtid" | "filepos" | "?" (unknown: the servers could not be read)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def ok(self) -> bool:
        return not self.failed

    def refusal(self) -> PreflightError:
        """The error a refused swap raises: the first failed check, and how many more."""
        f = self.failed
        more = f" (+{len(f) - 1} more)" if len(f) > 1 else ""
        return PreflightError(f"preflight refused the swap: {f[0].message}{more}", remedy=f[0].remedy,
                              checks=self.checks)


def prepare(ctx: SwapContext) -> Prepared:
    """Preflight and plan for ``ctx``.  Never writes (servers, Redis, journal)."""
    checks, _topo = run_preflight(ctx)
    mode = str(ctx.journal.record.get("state", {}).get("mode", "?"))
    if any(c.status == "fail" for c in checks):
        return Prepared(tuple(checks), (), (), mode)
    steps = build_plan(ctx)
    lines = tuple(PlanLine(s.name, s.title(ctx), s.reversible) for s in steps)
    return Prepared(tuple(checks), tuple(steps), lines, mode)


def run(ctx: SwapContext, prepared: Prepared, show: Printer) -> SwapResult:
    """Execute a prepared plan.  Raises PreflightError (nothing changed) when the cluster
    lock cannot be taken; every other outcome is in the returned result."""
    if not prepared.ok:
        raise prepared.refusal()
    take_lock_first(ctx)
    ctx.journal.begin(ctx.swap_id, ctx.source, ctx.target, prepared.mode,
                      [s.name for s in prepared.steps], ctx.opts.as_dict())
    return execute(ctx, list(prepared.steps), show)


def take_lock_first(ctx: SwapContext) -> None:
    """Acquire the cluster lock now (the Lock step then finds it held), or raise
    PreflightError when another swap holds it.  Nothing is written anywhere else."""
    try:
        lock = cluster_lock(ctx)
        if lock is None:
            return  # --no-pause without Redis: no lock (preflight warned)
        if not lock.acquire(ctx.swap_id):
            holder = lock.holder() or {}
            raise PreflightError(
                f"another swap took the cluster lock after preflight (swap {holder.get('swap_id')} "
                f"on {holder.get('host')}, pid {holder.get('pid')}); nothing was changed",
                remedy="wait for it to finish, then check `roleswap status`")
    except redis.RedisError as e:
        refused = redis_client.refusal(e)
        what = f": {refused[0]}" if refused else ""
        fix = f"{refused[1]} ({redis_client.where(ctx.config)})" if refused else \
            f"check {redis_client.where(ctx.config)}"
        raise PreflightError(f"could not take the cluster lock: Redis {type(e).__name__}{what}; "
                             "nothing was changed", remedy=fix) from None
    ctx.journal.record.setdefault("state", {})["lock_token"] = lock.token
