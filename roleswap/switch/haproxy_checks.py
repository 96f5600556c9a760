"""Preflight of the haproxy method (split from haproxy.py to keep modules small).

Never writes: it reads each instance's ``show cli level`` and ``show servers state``,
and makes one MySQL connection through each frontend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roleswap.errors import RoleSwapError
from roleswap.swap.check import Check
from roleswap.switch.haproxy_api import cmd_set
from roleswap.switch.haproxy_config import Instance
from roleswap.switch.probe import server_id, server_id_via

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext
    from roleswap.switch.haproxy import HaproxySwitch


def probe(ctx: SwapContext, inst: Instance, timeout: float = 1.0) -> int:
    """server_id behind a NEW connection through ``inst``'s frontend (raises ServerError)."""
    host, port = inst.frontend
    return server_id_via(ctx, f"haproxy {inst.name} frontend", host, port, timeout)


def _socat(inst: Instance, command: str) -> str:
    """How to run ``command`` by hand on ``inst`` (for remedies)."""
    where = (f"unix-connect:{inst.socket}" if inst.socket is not None
             else f"tcp:{inst.address[0]}:{inst.address[1]}" if inst.address else "?")
    run = f"echo '{command}' | socat stdio {where}"
    return f"on {inst.ssh.host}: {run}" if inst.ssh is not None else run


def haproxy_preflight(sw: HaproxySwitch, ctx: SwapContext) -> list[Check]:
    try:
        s = sw.settings(ctx)
    except RoleSwapError as e:
        return [Check.fail("haproxy config", e.message, e.remedy)]
    src = ctx.source
    out: list[Check] = []
    for inst in s.instances:
        out += _instance_checks(sw, ctx, inst)
    if any(c.status == "fail" for c in out):
        return out  # entries are not as expected: a MySQL probe would only confuse
    try:
        want = server_id(ctx, src)
    except RoleSwapError as e:
        return [*out, Check.fail("haproxy mysql", e.message, e.remedy)]
    for inst in s.instances:
        host, port = inst.frontend
        try:
            got = probe(ctx, inst, timeout=ctx.config.connect_timeout)
        except RoleSwapError as e:
            out.append(Check.fail(f"haproxy {inst.name} mysql",
                                  f"cannot connect to MySQL through {host}:{port}: {e.message}",
                                  f"the control account must reach the frontend from here; "
                                  f"check `frontend` of {inst.name}; {e.remedy}"))
            continue
        if got == want:
            out.append(Check.ok(f"haproxy {inst.name} mysql",
                                f"a connection to {host}:{port} reaches {src} (server_id {got})"))
        else:
            out.append(Check.fail(f"haproxy {inst.name} mysql",
                                  f"a connection to {host}:{port} reaches server_id {got}, not "
                                  f"{src} ({want})",
                                  f"the frontend does not route to backend {inst.backend}, or "
                                  f"the entries point at other addresses: check haproxy.cfg"))
    return out


def _instance_checks(sw: HaproxySwitch, ctx: SwapContext, inst: Instance) -> list[Check]:
    name = f"haproxy {inst.name}"
    api = sw.api(inst)
    try:
        level = api.level()
    except RoleSwapError as e:
        return [Check.fail(name, e.message, e.remedy)]
    if level != "admin":
        return [Check.fail(name, f"the runtime API at {inst.api} has level {level!r}: it cannot "
                           "set server states", "declare the stats socket with `level admin` in "
                           "haproxy.cfg (e.g. `stats socket /run/haproxy/admin.sock mode 660 "
                           "level admin`)")]
    try:
        found = api.servers()
    except RoleSwapError as e:
        return [Check.fail(name, f"{inst.name}: {e.message}", e.remedy)]
    src, dst = ctx.source, ctx.target
    e_src, e_dst = sw.entry(ctx, src), sw.entry(ctx, dst)
    missing = [f"{e} (for {n})" for n, e in ((src, e_src), (dst, e_dst)) if e not in found]
    if missing:
        return [Check.fail(name, f"backend {inst.backend} of {inst.name} has no server entry "
                           f"{' or '.join(missing)}; its entries: {', '.join(found) or 'none'}",
                           "add the entry to the backend in haproxy.cfg, or set "
                           "servers.<name>.haproxy_server to the entry's name")]
    out = [Check.ok(name, f"{inst.api}, level admin ({api.last_ms:.1f} ms); backend "
                    f"{inst.backend}: " + ", ".join(f"{e} {st.state}" for e, st in found.items()))]
    st_src, st_dst = found[e_src].state, found[e_dst].state
    if st_src != "ready":
        out.append(Check.fail(f"{name} from", f"{src}'s entry {inst.backend}/{e_src} is {st_src}, "
                              "not ready: HAProxy does not send it the writes",
                              f"swap from the server whose entry is ready; if {src} really is the "
                              f"primary: {_socat(inst, cmd_set(inst.backend, e_src, 'ready'))}"
                              if st_src != "down" else
                              "its health check fails: fix it (or the check) before swapping"))
    if st_dst != "maint":
        out.append(Check.fail(f"{name} to", f"{dst}'s entry {inst.backend}/{e_dst} is {st_dst}, "
                              "not maint: HAProxy may already send it connections",
                              "put it in maint first: "
                              + _socat(inst, cmd_set(inst.backend, e_dst, "maint"))))
    others = [e for e, st in found.items() if e not in (e_src, e_dst) and st.state != "maint"]
    if others:
        shown = ", ".join(f"{e} ({found[e].state})" for e in others)
        cmds = "; ".join(cmd_set(inst.backend, e, "maint") for e in others)
        out.append(Check.fail(f"{name} others", f"backend {inst.backend} of {inst.name} also "
                              f"routes to {shown}: writes may go to a replica",
                              f"only the primary's entry may be ready: {_socat(inst, cmds)}"))
    return out
