"""The shell commands the vip method runs on a host, every value quoted (pure functions)."""

from __future__ import annotations

import re
import shlex

from roleswap.switch.vip_config import VipSettings

TOOLS = {"ip": "iproute2", "arping": "iputils-arping", "pgrep": "procps", "timeout": "coreutils"}
GARP_WAITS = (0.02, 0.5)  # s the synchronous arping may take; the 2nd for a busy host
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
