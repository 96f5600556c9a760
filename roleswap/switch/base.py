"""The switch-method contract and the table of methods.

A method contributes steps at fixed *phases* of the plan:

    before_fence   runs while traffic is paused, before the old primary is fenced
    after_fence    e.g. take the VIP off the old primary (before promotion)
    after_promote  e.g. publish the new endpoint / put the VIP on the new primary
    after_resume   informational hooks, after the point of no return

its own preflight checks (which never write), and ``prepare`` (reads done before the
pause so the pause window holds only the switch itself).  The table of methods is
:mod:`roleswap.switch.registry` (methods import this module, never the other way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roleswap.swap.check import Check
    from roleswap.swap.context import SwapContext
    from roleswap.swap.step import Step

PHASES = ("before_fence", "after_fence", "after_promote", "after_resume")


class SwitchMethod:
    name = "none"

    def preflight(self, ctx: SwapContext) -> list[Check]:
        return []

    def steps(self, ctx: SwapContext) -> dict[str, list[Step]]:
        return {}

    def prepare(self, ctx: SwapContext) -> None:
        """Gather, before traffic is paused (under the cluster lock), what the steps would
        otherwise read inside the pause window.  Optional for the steps: one that finds
        nothing prepared (recover runs only the steps left) reads it itself."""

    def rewrite_redis(self, ctx: SwapContext,
                      status: dict[str, str]) -> tuple[str, Callable[[], bool]] | None:
        """What to write again on a new Redis master after a failover during the swap
        (see :mod:`roleswap.swap.redis_failover`): ``(what, write)`` or None.  ``status``
        is each step's latest journal status."""
        return None

    def close(self) -> None:
        """Release connections (SSH sessions...) opened for the swap."""
