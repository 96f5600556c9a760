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

Before the pause (``prepare``): kill a leftover arping on the old primary, read which
interfaces hold the VIP there and the target's server_id.  Steps: ``vip-remove`` right
after the fence (``ip addr del`` + the proof it is gone, one SSH round trip) and
``vip-add`` after promotion (``ip addr add``, ONE gratuitous ARP synchronously --
without it the first connection often stalls 0.5-1 s -- and a few in the background,
one round trip; then a new MySQL connection to the VIP must reach --to by server_id).
If the VIP cannot be removed the swap rolls back: never two holders.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from roleswap.errors import RoleSwapError, StepError
from roleswap.remote import DOC, RemoteError, RemoteShell, ssh_target
from roleswap.swap.step import Step
from roleswap.switch.base import SwitchMethod
from roleswap.switch.vip_checks import probe, server_id, vip_preflight
from roleswap.switch.vip_cmds import (
    ADD_FAILED,
    DEL_FAILED,
    GARP_WAITS,
    cmd_add_announce,
    cmd_addr,
    cmd_addrs,
    cmd_find_arping,
    cmd_garp_sync,
    cmd_kill,
    cmd_remove,
    parse_addrs,
)
from roleswap.switch.vip_config import VipSettings, interface, vip_settings

if TYPE_CHECKING:
    from roleswap.swap.check import Check
    from roleswap.swap.context import SwapContext

# -- the method -------------------------------------------------------------------------
class VipSwitch(SwitchMethod):
    name = "vip"

    def __init__(self) -> None:
        self._shells: dict[str, RemoteShell] = {}
        self._settings: VipSettings | None = None
        # read by prepare() before the pause (this process only; recover reads afresh)
        self.source_ifaces: list[str] | None = None
        self.target_id: int | None = None

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
        return vip_preflight(self, ctx)

    def prepare(self, ctx: SwapContext) -> None:
        """Before the pause: stop a leftover arping on the source (one would pull clients
        back to it after the move; only roleswap starts them, and we hold the lock), and
        read the source's VIP interfaces and the target's server_id, so the pause window
        holds one SSH round trip per host.  A host that fails here is left to the steps,
        which read for themselves and report it."""
        try:
            self.kill_arping(ctx, ctx.source)
            self.source_ifaces = self.holders(ctx, ctx.source)
            self.target_id = server_id(ctx, ctx.target)
        except RoleSwapError:
            self.source_ifaces = self.target_id = None

    def steps(self, ctx: SwapContext) -> dict[str, list[Step]]:
        return {"after_fence": [VipRemove(self)], "after_promote": [VipAdd(self)]}


def add_vip(sw: VipSwitch, ctx: SwapContext, name: str) -> str:
    """Put the VIP on ``name`` (there already is fine) and announce it: the synchronous
    GARP and the background ones, in ONE round trip; the GARP again with a longer wait
    only if arping's own "Sent 1 probes" (the proof it left) is missing."""
    s, iface, sh = sw.settings(ctx), interface(ctx.config, name), sw.shell(ctx, name)
    t0 = time.perf_counter()
    first, *longer = GARP_WAITS
    out = sh.run(cmd_add_announce(s, iface, first, sh.sudo), timeout=first + 5).out
    if ADD_FAILED in out:
        tail = ([ln for ln in out.split(ADD_FAILED)[0].strip().splitlines() if ln] or [""])[-1]
        raise RemoteError(f"ip addr add {s.ip} on {sh.t.where} failed: {tail[:200]}",
                          remedy=f"see the message; with sudo = true check the sudoers rules in {DOC}"
                          if sh.t.sudo else "see the message")
    for wait in longer:
        if _sent(out):
            break
        out = sh.run(cmd_garp_sync(s, iface, wait), timeout=wait + 5, privileged=True).out
    if not _sent(out):
        raise StepError(f"arping did not send a gratuitous ARP for {s.ip} on {name}: {out[-120:]}",
                        remedy=f"run `arping -U -c 1 -I {iface} {s.ip}` on {name} by hand")
    return f"{(time.perf_counter() - t0) * 1000:.0f} ms add + GARP"


def _sent(arping_out: str) -> bool:
    return re.search(r"Sent [1-9]\d* probe", arping_out) is not None


class VipRemove(Step):
    name = "vip-remove"

    def __init__(self, sw: VipSwitch) -> None:
        self.sw = sw

    def title(self, ctx: SwapContext) -> str:
        return (f"remove VIP {self.sw.settings(ctx).vip} from {ctx.source} "
                f"({interface(ctx.config, ctx.source)})")

    def apply(self, ctx: SwapContext) -> str:
        s, src, sw = self.sw.settings(ctx), ctx.source, self.sw
        t0 = time.perf_counter()
        ifaces = sw.source_ifaces
        if ifaces is None:  # not prepared (recover): read it here
            sw.kill_arping(ctx, src)  # an old arping would pull clients back to src
            ifaces = sw.holders(ctx, src)
        sh = sw.shell(ctx, src)  # (re)connects: a host we cannot reach fails here, untouched
        # from here the VIP may be gone: undo must re-add it (re-adding where it still is,
        # is harmless)
        ctx.remember(vip_remove_started=time.time(), vip_remove_sent=True)
        try:
            out = sh.run(cmd_remove(s, ifaces, sh.sudo)).out
        except RemoteError as e:
            if not e.sent:  # it never reached the host: the VIP is where it was
                ctx.remember(vip_remove_sent=False)
            raise
        ip = s.ip
        left = [i for i, a in parse_addrs(out) if a.split("/")[0] == ip]
        if DEL_FAILED in out and left:
            tail = ([ln for ln in out.split(DEL_FAILED)[0].strip().splitlines() if ln] or [""])[-1]
            raise RemoteError(f"ip addr del {ip} on {sh.t.where} failed: {tail[:200]}",
                              remedy=f"see the message; with sudo = true check the sudoers rules "
                                     f"in {DOC}" if sh.t.sudo else "see the message")
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
        want = self.sw.target_id if self.sw.target_id is not None else server_id(ctx, dst)
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
        ctx.remember_with_end(vip_move_ms=round(move_ms, 1))  # a figure, not a fact to act on
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
