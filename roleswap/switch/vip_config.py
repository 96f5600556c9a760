"""The vip method's settings, validated when the config is loaded (never at swap time).

Apart from :mod:`roleswap.switch.vip` so that :mod:`roleswap.config` can validate a vip
config without importing the method (and with it the engine): config -> vip_config ->
remote, one way.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roleswap.errors import ConfigError
from roleswap.remote import setting, ssh_target

if TYPE_CHECKING:
    from roleswap.config import Config

SAFE_IFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class VipSettings:
    vip: ipaddress.IPv4Interface
    arping_count: int = 3
    verify_timeout: float = 10.0
    port: int | None = None

    @property
    def ip(self) -> str:
        return str(self.vip.ip)


def vip_settings(config: Config) -> VipSettings:
    """Validate ``[switch]`` for the vip method (and every server's SSH/interface keys)."""
    src, sw = config.source, config.switch
    raw = sw.get("vip")
    if not isinstance(raw, str) or "/" not in raw:
        raise ConfigError(f"{src}: switch.vip = {raw!r} must be an IPv4 address with its prefix",
                          remedy='e.g. vip = "10.0.0.50/24" (the prefix of the interface\'s subnet)')
    try:
        vip = ipaddress.ip_interface(raw)
    except ValueError:
        raise ConfigError(f"{src}: switch.vip = {raw!r} is not an address/prefix",
                          remedy='e.g. vip = "10.0.0.50/24"') from None
    if not isinstance(vip, ipaddress.IPv4Interface):
        raise ConfigError(f"{src}: switch.vip is IPv6; the vip method moves IPv4 addresses (ARP)",
                          remedy="use an IPv4 VIP, or the endpoint/hook method")
    count = sw.get("arping_count", 3)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 20:
        raise ConfigError(f"{src}: switch.arping_count must be an integer 0-20", remedy="e.g. 3")
    verify = sw.get("verify_timeout", 10.0)
    if not isinstance(verify, int | float) or isinstance(verify, bool) or not 0 < verify <= 120:
        raise ConfigError(f"{src}: switch.verify_timeout must be seconds in (0, 120]", remedy="e.g. 10")
    port = sw.get("vip_port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"{src}: switch.vip_port must be an integer 1-65535", remedy="e.g. 3306")
    for name, s in config.servers.items():
        if s.host == str(vip.ip):
            raise ConfigError(f"{src}: servers.{name}.host is the VIP itself",
                              remedy="give each server its own address; the VIP floats between them")
        interface(config, name)
        ssh_target(config, name)
    return VipSettings(vip, count, float(verify), port)


def interface(config: Config, server: str) -> str:
    iface = setting(config, server, "interface", "eth0")
    if not isinstance(iface, str) or not SAFE_IFACE.match(iface):
        key = (f"servers.{server}.interface" if "interface" in config.server(server).extra
               else "switch.interface")
        raise ConfigError(f"{config.source}: {key} = {iface!r} is not an interface name",
                          remedy="use the name `ip link` shows: letters, digits, '_', '.', '-' "
                                 "(at most 15)")
    return iface
