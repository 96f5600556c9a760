"""The switch-method contract and the table of methods.

A method contributes steps at fixed *phases* of the plan:

    before_fence   runs while traffic is paused, before the old primary is fenced
    after_fence    e.g. take the VIP off the old primary (before promotion)
    after_promote  e.g. publish the new endpoint / put the VIP on the new primary
    after_resume   informational hooks, after the point of no return

and its own preflight checks (which never write).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roleswap.errors import UsageError

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext
    from roleswap.swap.preflight import Check
    from roleswap.swap.step import Step

PHASES = ("before_fence", "after_fence", "after_promote", "after_resume")


class SwitchMethod:
    name = "none"

    def preflight(self, ctx: SwapContext) -> list[Check]:
        return []

    def steps(self, ctx: SwapContext) -> dict[str, list[Step]]:
        return {}

    def close(self) -> None:
        """Release connections (SSH sessions...) opened for the swap."""


def make_switch(name: str) -> SwitchMethod:
    from roleswap.switch.endpoint import EndpointSwitch
    from roleswap.switch.hook import HookSwitch

    table: dict[str, type[SwitchMethod]] = {
        "none": SwitchMethod,
        "endpoint": EndpointSwitch,
        "hook": HookSwitch,
    }
    if name == "vip":
        from roleswap.switch.vip import VipSwitch

        table["vip"] = VipSwitch
    try:
        return table[name]()
    except KeyError:
        raise UsageError(f"switch method {name!r} is not available",
                         remedy=f"use one of: {', '.join(sorted(table))}") from None
