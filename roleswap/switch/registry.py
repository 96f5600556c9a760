"""The table of switch methods: name -> class (imported lazily: vip and haproxy pull in SSH)."""

from __future__ import annotations

from roleswap.errors import UsageError
from roleswap.switch.base import SwitchMethod


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
    if name == "haproxy":
        from roleswap.switch.haproxy import HaproxySwitch

        table["haproxy"] = HaproxySwitch
    try:
        return table[name]()
    except KeyError:
        raise UsageError(f"switch method {name!r} is not available",
                         remedy=f"use one of: {', '.join(sorted(table))}") from None
