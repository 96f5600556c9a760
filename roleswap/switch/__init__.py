"""How client traffic follows the new primary: endpoint, hook, vip or none."""

from roleswap.switch.base import SwitchMethod
from roleswap.switch.registry import make_switch

__all__ = ["SwitchMethod", "make_switch"]
