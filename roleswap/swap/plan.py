"""The plan: an ordered list of steps, built from a table (print it with --dry-run).

Switch methods slot their own steps in at named phases; ``--no-pause`` drops the
pause step (the resume step stays as the point-of-no-return marker).
"""

from __future__ import annotations

from collections.abc import Callable

from roleswap.swap.context import SwapContext
from roleswap.swap.step import Step
from roleswap.swap.steps_db import Demote, PreSync, Repoint, Verify
from roleswap.swap.steps_fence import CatchUp, Fence, FenceCheck
from roleswap.swap.steps_promote import Detach, Promote
from roleswap.swap.steps_traffic import Lock, Pause, Resume, Unlock

# (entry, condition): an entry is a Step class or the name of a switch phase.
PLAN: tuple[tuple[type[Step] | str, Callable[[SwapContext], bool]], ...] = (
    (Lock, lambda ctx: True),
    (PreSync, lambda ctx: True),
    (Pause, lambda ctx: ctx.opts.pause),
    ("before_fence", lambda ctx: True),
    (Fence, lambda ctx: True),
    ("after_fence", lambda ctx: True),
    (CatchUp, lambda ctx: True),
    (Promote, lambda ctx: True),
    ("after_promote", lambda ctx: True),
    (FenceCheck, lambda ctx: True),
    (Resume, lambda ctx: True),
    (Detach, lambda ctx: True),  # first after the resume: demote must not find it pointing back
    ("after_resume", lambda ctx: True),
    (Demote, lambda ctx: True),
    (Repoint, lambda ctx: True),
    (Verify, lambda ctx: True),
    (Unlock, lambda ctx: True),
)


def build_plan(ctx: SwapContext) -> list[Step]:
    phase_steps = ctx.switch.steps(ctx) if ctx.switch is not None else {}
    plan: list[Step] = []
    for entry, wanted in PLAN:
        if not wanted(ctx):
            continue
        if isinstance(entry, str):
            plan.extend(phase_steps.get(entry, []))
        else:
            plan.append(entry())
    return plan


def ponr_index(plan: list[Step]) -> int:
    """Index of the point-of-no-return step."""
    return next(i for i, s in enumerate(plan) if s.ponr)
