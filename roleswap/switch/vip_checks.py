"""Preflight of the vip method (split from vip.py to keep modules small).  Never writes.

Opens the SSH sessions the steps will reuse, in parallel (a login costs ~100 ms).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from roleswap.errors import RoleSwapError
from roleswap.remote import DOC
from roleswap.swap.check import Check
from roleswap.switch.probe import server_id, server_id_via
from roleswap.switch.vip_cmds import (
    EXAMPLE_PID,
    cmd_kill,
    cmd_link,
    cmd_missing_tools,
    sudo_commands,
    tools,
)
from roleswap.switch.vip_config import VipSettings, interface

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext
    from roleswap.switch.vip import VipSwitch


def probe(ctx: SwapContext, s: VipSettings, timeout: float = 1.0) -> int:
    """server_id behind a NEW connection to the VIP (raises ServerError)."""
    return server_id_via(ctx, "vip", s.ip, s.port or ctx.server(ctx.target).port, timeout)


def vip_preflight(sw: VipSwitch, ctx: SwapContext) -> list[Check]:

    try:
        s = sw.settings(ctx)
    except RoleSwapError as e:
        return [Check.fail("vip config", e.message, e.remedy)]
    src, dst = ctx.source, ctx.target
    names = list(ctx.config.servers)

    def login(name: str) -> str | None:
        try:
            sw.shell(ctx, name)
            return None
        except RoleSwapError as e:
            return f"{e.message} | {e.remedy}"

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        errors = dict(zip(names, pool.map(login, names), strict=True))
    out: list[Check] = []
    for name in names:
        err = errors[name]
        if err is None:
            out.append(Check.ok(f"ssh {name}", f"logged in ({sw.shell(ctx, name).t.where}, "
                                               f"{sw.shell(ctx, name).connect_ms:.0f} ms)"))
            continue
        msg, _, fix = err.partition(" | ")
        if name in (src, dst):
            out.append(Check.fail(f"ssh {name}", msg, fix))
        else:
            out.append(Check.warn(f"ssh {name}", f"{msg}: cannot verify it does not hold the VIP",
                                  fix))
    if errors[src] or errors[dst]:
        return out
    try:
        out += _host_checks(sw, ctx, [n for n in names if errors[n] is None])
    except RoleSwapError as e:  # a session died during preflight
        out.append(Check.fail("vip", e.message, e.remedy))
        return out
    if any(c.status == "fail" for c in out):
        return out  # the VIP is not where we expect: a MySQL probe would only confuse
    try:
        want, got = server_id(ctx, src), probe(ctx, s, timeout=ctx.config.connect_timeout)
    except RoleSwapError as e:
        out.append(Check.fail("vip mysql", f"cannot connect to MySQL through VIP {s.ip}: {e.message}",
                              "the control account must reach the VIP from here; " + e.remedy))
        return out
    if got == want:
        out.append(Check.ok("vip mysql", f"a connection to {s.ip} reaches {src} (server_id {got})"))
    else:
        out.append(Check.fail("vip mysql", f"a connection to {s.ip} reaches server_id {got}, "
                               f"not {src} ({want})",
                               "stale ARP or another host answers for the VIP; find it before swapping"))
    return out


def _host_checks(sw: VipSwitch, ctx: SwapContext, reachable: list[str]) -> list[Check]:

    s, src, dst = sw.settings(ctx), ctx.source, ctx.target
    out: list[Check] = []
    for name in (src, dst):
        sh = sw.shell(ctx, name)
        need = tools(sh.t.sudo)
        missing = sh.check(cmd_missing_tools(sh.t.sudo), "looking for tools").split()
        if missing:
            pkgs = ", ".join(f"{b} (package {need.get(b, b)})" for b in missing)
            out.append(Check.fail(f"tools {name}", f"missing on {name}: {pkgs}",
                                  f"install them on {name}, e.g. apt-get install -y "
                                  + " ".join(sorted({need.get(b, b) for b in missing}))
                                  + " (or fix remote_path)"))
        else:
            out.append(Check.ok(f"tools {name}", ", ".join(need)))
        iface = interface(ctx.config, name)
        if sh.run(cmd_link(iface)).rc != 0:
            out.append(Check.fail(f"interface {name}", f"{name} has no interface {iface!r}",
                                  f"set servers.{name}.interface to the interface of its LAN"))
        else:
            out.append(Check.ok(f"interface {name}", iface))
        if sh.t.sudo and "sudo" not in missing:
            # every command the steps run through sudo, exactly as they will be run
            cmds = sudo_commands(s, iface)
            denied = [c for c in cmds if sh.run(f"sudo -n -l -- {c} >/dev/null").rc != 0]
            shown = ["kill PID" if c == cmd_kill([EXAMPLE_PID]) else c for c in denied]
            if denied:
                out.append(Check.fail(f"sudo {name}", f"sudo -n on {name} (user {sh.t.user}) does "
                                      f"not allow: {'; '.join(shown)}",
                                      f"allow exactly these for {sh.t.user}, NOPASSWD, in a sudoers "
                                      f"drop-in on {name} (example: {DOC}, What the hosts need)"))
            else:
                out.append(Check.ok(f"sudo {name}", f"sudo -n allows all {len(cmds)} commands "
                                    "(ip addr add/del, arping" + (", kill)" if s.arping_count else ")")))
    holders = {n: sw.holders(ctx, n) for n in reachable}
    where = sorted(n for n, ifs in holders.items() if ifs)
    if where == [src]:
        out.append(Check.ok("vip", f"{s.vip} is on {src} ({', '.join(holders[src])}) and on no "
                            "other server"))
    elif src not in where:
        out.append(Check.fail("vip", f"{s.vip} is not on {src} (holders: {', '.join(where) or 'none'})",
                              f"--from must hold the VIP; move it to {src} by hand or swap from "
                              f"the holder"))
    else:
        out.append(Check.fail("vip", f"{s.vip} is on {', '.join(where)}: more than one host",
                              "remove it from every host but the primary before swapping"))
    return out
