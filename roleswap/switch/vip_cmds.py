"""The shell commands the vip method runs on a host, every value quoted (pure functions)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from roleswap.switch.vip_config import VipSettings

TOOLS = {"ip": "iproute2", "arping": "iputils-arping", "pgrep": "procps", "timeout": "coreutils"}
# s the synchronous arping may take: it sends within ~1 ms of starting (measured: even
# 2 ms sent, under load 40); a longer wait only when its "Sent 1 probes" is missing.
GARP_WAITS = (0.003, 0.05, 0.5)
ADD_FAILED = "__rs_vip_add_failed"  # printed by cmd_add_announce when `ip addr add` failed
DEL_FAILED = "__rs_vip_del_failed"  # printed by cmd_remove when an `ip addr del` failed
EXAMPLE_PID = "4242"  # stands for the arping PIDs `kill` gets, in `sudo -n -l` checks
q = shlex.quote


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


def cmd_remove(s: VipSettings, ifaces: list[str], sudo: Callable[[str], str]) -> str:
    """ONE round trip for the VIP's removal: ``ip addr del`` on each of ``ifaces`` (a
    failure prints :data:`DEL_FAILED` after its output), then the addresses left, to
    prove it gone.  ``sudo`` wraps a privileged command (RemoteShell.sudo)."""
    dels = [f"{sudo(cmd_addr('del', s, i))} 2>&1 || echo {DEL_FAILED}" for i in ifaces]
    return "; ".join([*dels, cmd_addrs()])


def cmd_add_announce(s: VipSettings, iface: str, wait: float, sudo: Callable[[str], str]) -> str:
    """ONE round trip for the VIP's arrival: ``ip addr add`` (already there is fine: a
    retry, or an undo), then the synchronous gratuitous ARP, then the background ones.
    A failed add prints its output and :data:`ADD_FAILED` and announces nothing."""
    announce = sudo(cmd_garp_sync(s, iface, wait)) + " 2>&1"
    if s.arping_count:
        announce += "; " + sudo(cmd_garp_background(s, iface))
    end = " " if announce.endswith("&") else "; "  # `&` ends a command as `;` does
    return (f"if o=$({sudo(cmd_addr('add', s, iface))} 2>&1) || "
            f'case "$o" in *"File exists"*) true;; *) false;; esac; then {announce}{end}'
            f'else printf "%s\\n" "$o"; echo {ADD_FAILED}; fi')


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
