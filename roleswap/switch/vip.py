"""``vip``: move a floating IP from the old primary to the new one over SSH.

Config::

    [switch]
    method = "vip"
    vip = "198.18.71.10/24"     # address/prefix, exactly as on the interface
    interface = "eth0"          # default; [servers.<name>] interface = "..." overrides
    arping_count = 3            # background gratuitous ARPs after the synchronous first
    verify_timeout = 10         # s: a NEW connection to the VIP must reach --to by then
    # vip_port = 3306           # default: the port of --to
    # + the SSH keys of roleswap.remote (ssh_user, ssh_key, known_hosts, sudo ...)

Steps: ``vip-remove`` right after the fence (kill leftover arping, ``ip addr del``,
check it is gone) and ``vip-add`` after promotion (``ip addr add``, ONE gratuitous
ARP synchronously -- without it the first connection often stalls 0.5-1 s -- then a
few in the background, then a new MySQL connection to the VIP must reach --to by
server_id).  If the VIP cannot be removed the swap rolls back: never two holders.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roleswap.config import Config, ServerConfig
from roleswap.errors import ConfigError, RoleSwapError, StepError
from roleswap.mysql import conn as mconn
from roleswap.remote import DOC, RemoteError, RemoteShell, setting, ssh_target
from roleswap.swap.step import Step
from roleswap.switch.base import SwitchMethod

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext
    from roleswap.swap.preflight import Check

SAFE_IFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
TOOLS = {"ip": "iproute2", "arping": "iputils-arping", "pgrep": "procps", "timeout": "coreutils"}
GARP_WAITS = (0.02, 0.5)  # s the synchronous arping may take; the 2nd for a busy host
EXAMPLE_PID = "4242"  # stands for the arping PIDs `kill` gets, in `sudo -n -l` checks
q = shlex.quote


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


# -- remote commands (every value quoted) ---------------------------------------------
def cmd_addrs() -> str:
    return "ip -o -4 addr show"


def parse_addrs(out: str) -> list[tuple[str, str]]:
    """``ip -o -4 addr show`` -> [(interface, "a.b.c.d/len"), ...]."""
    found = []
    for line in out.splitlines():
        m = re.match(r"^\d+:\s+(\S+)\s+inet\s+(\S+)", line)
        if m:
            found.append((m.group(1).split("@")[0], m.group(2)))
    return found


def cmd_link(iface: str) -> str:
    return f"ip -o link show dev {q(iface)}"


def cmd_addr(op: str, s: VipSettings, iface: str) -> str:
    assert op in ("add", "del")
    return f"ip addr {op} {q(s.vip.with_prefixlen)} dev {q(iface)}"


def cmd_garp_sync(s: VipSettings, iface: str, wait: float) -> str:
    # iputils arping sends at once but then sleeps a whole interval (1 s, integer only; -i 0
    # hangs): interrupt it and read its own "Sent 1 probes" as the proof the GARP left.
    return f"timeout -s INT {wait:g} arping -U -c 1 -I {q(iface)} {q(s.ip)}"


def cmd_garp_repeat(s: VipSettings, iface: str) -> str:
    return f"arping -q -U -c {int(s.arping_count)} -I {q(iface)} {q(s.ip)}"


def cmd_garp_background(s: VipSettings, iface: str) -> str:
    return f"{cmd_garp_repeat(s, iface)} >/dev/null 2>&1 &"


def cmd_kill(pids: list[str]) -> str:
    return "kill " + " ".join(q(p) for p in pids)


def sudo_commands(s: VipSettings, iface: str) -> list[str]:
    """Every command run with ``privileged=True`` (with sudo = true: what sudoers must allow).

    ``kill`` takes PIDs found at run time; it is listed with :data:`EXAMPLE_PID`.
    """
    cmds = [cmd_addr("add", s, iface), cmd_addr("del", s, iface),
            *(cmd_garp_sync(s, iface, w) for w in GARP_WAITS)]
    if s.arping_count:
        cmds += [cmd_garp_repeat(s, iface), cmd_kill([EXAMPLE_PID])]
    return cmds


def cmd_find_arping(s: VipSettings) -> str:
    """PIDs of arping for this VIP in THIS host's network namespace (lab hosts share PIDs).

    The namespace is told by the inode of ``/proc/PID/net/dev`` (one per network
    namespace), which any user may stat: ``/proc/PID/ns/net`` of a root-owned arping is
    unreadable for a sudo user.  Where it cannot be read the PID counts as this host's
    (real hosts do not share PIDs).  With sudo the ``sudo`` parent matches too; killing
    it stops its arping as well.
    """
    pattern = "arping .*" + re.escape(s.ip) + "$"
    netid = 'stat -L -c %d:%i /proc/{}/net/dev 2>/dev/null'
    return (f'me=$({netid.format("$$")}); for p in $(pgrep -f -- ' + q(pattern) + '); do '
            f'n=$({netid.format("$p")}); '
            'if [ -z "$n" ] || [ -z "$me" ] || [ "$n" = "$me" ]; then echo "$p"; fi; done')


def tools(sudo: bool = False) -> dict[str, str]:
    """Binaries a host needs -> their Debian package (``sudo`` too with sudo = true)."""
    return {**TOOLS, "sudo": "sudo"} if sudo else dict(TOOLS)


def cmd_missing_tools(sudo: bool = False) -> str:
    return (f"for b in {' '.join(tools(sudo))}; do command -v \"$b\" >/dev/null 2>&1 || echo \"$b\"; "
            "done")


# -- the method -------------------------------------------------------------------------
class VipSwitch(SwitchMethod):
    name = "vip"

    def __init__(self) -> None:
        self._shells: dict[str, RemoteShell] = {}
        self._settings: VipSettings | None = None

    def settings(self, ctx: SwapContext) -> VipSettings:
        if self._settings is None:
            self._settings = vip_settings(ctx.config)
        return self._settings

    def shell(self, ctx: SwapContext, name: str) -> RemoteShell:
        sh = self._shells.get(name)
        if sh is None:
            sh = self._shells[name] = RemoteShell(ssh_target(ctx.config, name))
        sh.connect()  # no-op while the session lives; reconnects after a loss
        return sh

    def holders(self, ctx: SwapContext, name: str) -> list[str]:
        """Interfaces of ``name`` carrying the VIP (any prefix)."""
        out = self.shell(ctx, name).check(cmd_addrs(), "listing addresses")
        return [i for i, a in parse_addrs(out) if a.split("/")[0] == self.settings(ctx).ip]

    def kill_arping(self, ctx: SwapContext, name: str) -> int:
        sh = self.shell(ctx, name)
        pids = [p for p in sh.check(cmd_find_arping(self.settings(ctx)), "finding arping").split()
                if p.isdigit()]
        if pids:
            sh.run(cmd_kill(pids), privileged=True)  # gone already is fine
        return len(pids)

    def close(self) -> None:
        for sh in self._shells.values():
            sh.close()
        self._shells.clear()

    def preflight(self, ctx: SwapContext) -> list[Check]:
        from roleswap.switch.vip_checks import vip_preflight

        return vip_preflight(self, ctx)

    def steps(self, ctx: SwapContext) -> dict[str, list[Step]]:
        return {"after_fence": [VipRemove(self)], "after_promote": [VipAdd(self)]}


def probe(ctx: SwapContext, s: VipSettings, timeout: float = 1.0) -> int:
    """server_id behind a NEW connection to the VIP (raises ServerError)."""
    port = s.port or ctx.server(ctx.target).port
    target = ServerConfig(name="vip", host=s.ip, port=port)
    c = mconn.connect(target, ctx.config.mysql, timeout=timeout, tls=ctx.config.tls)
    try:
        return int(mconn.run(c, target, [("SELECT @@server_id AS id", ())])[0]["id"])
    finally:
        c.close()


def server_id(ctx: SwapContext, name: str) -> int:
    return int(ctx.query(name, "SELECT @@server_id AS id")[0]["id"])


def add_vip(sw: VipSwitch, ctx: SwapContext, name: str) -> str:
    """Put the VIP on ``name`` (if absent) and announce it: sync GARP + background GARPs."""
    s, iface, sh = sw.settings(ctx), interface(ctx.config, name), sw.shell(ctx, name)
    if not sw.holders(ctx, name):
        sh.check(cmd_addr("add", s, iface), f"ip addr add {s.ip}", privileged=True)
    t0 = time.perf_counter()
    for wait in GARP_WAITS:  # a busy host may need longer to start arping
        out = sh.run(cmd_garp_sync(s, iface, wait), timeout=wait + 5, privileged=True).out
        if re.search(r"Sent [1-9]\d* probe", out):
            break
    else:
        raise StepError(f"arping did not send a gratuitous ARP for {s.ip} on {name}: {out[-120:]}",
                        remedy=f"run `arping -U -c 1 -I {iface} {s.ip}` on {name} by hand")
    if s.arping_count:
        sh.check(cmd_garp_background(s, iface), "background arping", privileged=True)
    return f"{(time.perf_counter() - t0) * 1000:.0f} ms GARP"


class VipRemove(Step):
    name = "vip-remove"

    def __init__(self, sw: VipSwitch) -> None:
        self.sw = sw

    def title(self, ctx: SwapContext) -> str:
        return (f"remove VIP {self.sw.settings(ctx).vip} from {ctx.source} "
                f"({interface(ctx.config, ctx.source)})")

    def apply(self, ctx: SwapContext) -> str:
        s, src = self.sw.settings(ctx), ctx.source
        t0 = time.perf_counter()
        ctx.remember(vip_remove_started=time.time())
        self.sw.kill_arping(ctx, src)  # an old arping would pull clients back to src
        sh = self.sw.shell(ctx, src)
        for iface in self.sw.holders(ctx, src):
            ctx.remember(vip_remove_sent=True)  # from here the VIP may be gone: undo must re-add
            sh.check(cmd_addr("del", s, iface), f"ip addr del {s.ip}", privileged=True)
        left = self.sw.holders(ctx, src)
        if left:
            raise StepError(f"VIP {s.ip} is still on {src} ({', '.join(left)}) after removal",
                            remedy=f"check {src} by hand (`ip -4 addr`); see {DOC}")
        return f"{s.ip} gone from {src} in {(time.perf_counter() - t0) * 1000:.1f} ms"

    def undo(self, ctx: SwapContext) -> str:
        if not ctx.state.get("vip_remove_sent"):
            return f"the VIP was never removed from {ctx.source}"
        # never two holders: the VIP must be off the target before it returns to the source
        try:
            on_target = self.sw.holders(ctx, ctx.target)
        except RoleSwapError:
            if ctx.state.get("vip_add_sent"):
                raise StepError(f"cannot check whether {ctx.target} holds the VIP; not re-adding it "
                                f"on {ctx.source}", remedy=f"see {DOC}: remove it on "
                                f"{ctx.target} by hand, then `roleswap recover`") from None
            on_target = []
        if on_target:
            raise StepError(f"{ctx.target} still holds the VIP; not re-adding it on {ctx.source}",
                            remedy=f"remove it from {ctx.target}, then run `roleswap recover`")
        return f"VIP back on {ctx.source} ({add_vip(self.sw, ctx, ctx.source)})"


class VipAdd(Step):
    name = "vip-add"

    def __init__(self, sw: VipSwitch) -> None:
        self.sw = sw

    def title(self, ctx: SwapContext) -> str:
        return (f"add VIP {self.sw.settings(ctx).vip} on {ctx.target} "
                f"({interface(ctx.config, ctx.target)}), GARP, verify a new connection")

    def apply(self, ctx: SwapContext) -> str:
        s, dst = self.sw.settings(ctx), ctx.target
        want = server_id(ctx, dst)
        ctx.remember(vip_add_sent=True)
        garp = add_vip(self.sw, ctx, dst)
        deadline = time.monotonic() + s.verify_timeout
        tries, seen = 0, "nothing"
        while True:
            tries += 1
            try:
                got = probe(ctx, s, timeout=min(1.0, s.verify_timeout))
                if got == want:
                    break
                seen = f"server_id {got}"
            except RoleSwapError as e:
                seen = e.message
            if time.monotonic() > deadline:
                raise StepError(f"a new connection to VIP {s.ip} did not reach {dst} "
                                f"(server_id {want}) within {s.verify_timeout:g}s; last: {seen}",
                                remedy="check ARP caches / switches between clients and hosts; "
                                       f"see {DOC}")
            time.sleep(0.005)
        started = ctx.state.get("vip_remove_started")
        move_ms = (time.time() - started) * 1000 if started else float("nan")
        ctx.remember(vip_move_ms=round(move_ms, 1))
        ctx.notes.append(f"VIP {s.ip} moved {ctx.source} -> {dst}: {move_ms:.0f} ms from removal "
                         f"to a new connection reaching {dst}")
        return f"{garp}; new connection reached {dst} (try {tries}); moved in {move_ms:.0f} ms"

    def undo(self, ctx: SwapContext) -> str:
        killed = self.sw.kill_arping(ctx, ctx.target)
        s, sh = self.sw.settings(ctx), self.sw.shell(ctx, ctx.target)
        ifaces = self.sw.holders(ctx, ctx.target)
        for iface in ifaces:
            sh.check(cmd_addr("del", s, iface), f"ip addr del {s.ip}", privileged=True)
        if self.sw.holders(ctx, ctx.target):
            raise StepError(f"VIP still on {ctx.target}", remedy=f"remove it by hand; see {DOC}")
        return (f"VIP removed from {ctx.target}" if ifaces else f"VIP was not on {ctx.target}") + \
            (f", {killed} arping stopped" if killed else "")


__all__ = ["RemoteError", "VipSwitch", "vip_settings"]
