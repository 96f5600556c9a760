"""``haproxy``: move the writes backend of one or more HAProxy instances to the new primary.

The backend that serves writes has one server entry per database server; only the
primary's is ``ready``, the others are in ``maint``.  Steps (through the runtime API of
every instance, see :mod:`roleswap.switch.haproxy_api`):

* ``haproxy-maint`` (after the fence): --from's entry to ``maint`` and ``shutdown
  sessions`` on it, in one connection per instance: no connection reaches the fenced
  server through HAProxy any more.  Undo: --from's entry back to the state it had, but
  only on an instance where --to's entry is not ready (never two ready entries).
* ``haproxy-ready`` (after promote): --to's entry to ``ready``; then a NEW MySQL
  connection through each instance's ``frontend`` must reach --to (``@@server_id``)
  within ``verify_timeout`` before traffic resumes.  Undo: --to's entry back to the
  state it had (``maint``) and its sessions shut down.

What the undos restore is journaled before the pause (``prepare``) or, in a fresh
process (recover), read by the step itself.  HAProxy keeps runtime changes in memory
only: a restart reloads its config file unless ``server-state-file`` is used (README).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from roleswap.config import Config
from roleswap.errors import RoleSwapError, StepError
from roleswap.remote import RemoteShell
from roleswap.swap.step import Step
from roleswap.switch.base import SwitchMethod
from roleswap.switch.haproxy_api import (
    DOC,
    ApiError,
    RuntimeApi,
    ServerState,
    cmd_set,
    cmd_shutdown,
)
from roleswap.switch.haproxy_checks import haproxy_preflight, probe, server_id
from roleswap.switch.haproxy_config import HaproxySettings, Instance, haproxy_settings

if TYPE_CHECKING:
    from roleswap.swap.check import Check
    from roleswap.swap.context import SwapContext

PERSIST_NOTE = ("HAProxy keeps this change in memory only: before it restarts or reloads, make it "
                "permanent (`disabled` on the old primary's entry in haproxy.cfg, or "
                "server-state-file + load-server-state-from-file); see " + DOC)


class HaproxySwitch(SwitchMethod):
    name = "haproxy"

    def __init__(self) -> None:
        self._settings: HaproxySettings | None = None
        self._shells: dict[str, RemoteShell] = {}
        self.target_id: int | None = None  # read by prepare()

    def settings(self, ctx: SwapContext | Config) -> HaproxySettings:
        if self._settings is None:
            config = ctx if isinstance(ctx, Config) else ctx.config
            self._settings = haproxy_settings(config)
        return self._settings

    def api(self, inst: Instance) -> RuntimeApi:
        shell = None
        if inst.ssh is not None:
            shell = self._shells.get(inst.name)
            if shell is None:
                shell = self._shells[inst.name] = RemoteShell(inst.ssh)
        return RuntimeApi(inst, shell)

    def entry(self, ctx: SwapContext, server: str) -> str:
        return self.settings(ctx).servers[server]

    def states(self, ctx: SwapContext) -> dict[str, dict[str, str]]:
        """{instance: {"from": state, "to": state}} of --from's and --to's entries now."""
        out = {}
        for inst in self.settings(ctx).instances:
            found = self.api(inst).servers()
            out[inst.name] = {role: _state_of(found, self.entry(ctx, name), inst)
                              for role, name in (("from", ctx.source), ("to", ctx.target))}
        return out

    def close(self) -> None:
        for sh in self._shells.values():
            sh.close()
        self._shells.clear()

    def preflight(self, ctx: SwapContext) -> list[Check]:
        return haproxy_preflight(self, ctx)

    def prepare(self, ctx: SwapContext) -> None:
        """Before the pause: journal what the undos restore (each entry's state now) and
        read --to's server_id, so the window holds only the two writes and the probe.
        A failure here is left to the steps, which read for themselves and report it."""
        try:
            if "haproxy_before" not in ctx.state:
                ctx.remember(haproxy_before=self.states(ctx))
            self.target_id = server_id(ctx, ctx.target)
        except RoleSwapError:
            self.target_id = None

    def steps(self, ctx: SwapContext) -> dict[str, list[Step]]:
        return {"after_fence": [HaproxyMaint(self)], "after_promote": [HaproxyReady(self)]}


def _state_of(found: dict[str, ServerState], entry: str, inst: Instance) -> str:
    st = found.get(entry)
    if st is None:
        raise ApiError(f"HAProxy {inst.name}: backend {inst.backend} has no server {entry!r} "
                       f"(entries: {', '.join(found) or 'none'})",
                       remedy="add it to the backend, or set servers.<name>.haproxy_server")
    return st.state


def _before(sw: HaproxySwitch, ctx: SwapContext) -> dict[str, dict[str, str]]:
    before = ctx.state.get("haproxy_before")
    if before is None:  # not prepared (recover): read it now
        before = sw.states(ctx)
        ctx.remember(haproxy_before=before)
    return dict(before)


def _each(sw: HaproxySwitch, ctx: SwapContext, key: str, act: Any) -> list[str]:
    """Run ``act(inst)`` on every instance in order.  On failure, journal under ``key``
    the instances the commands certainly never reached (their undo leaves them alone)."""
    insts = list(sw.settings(ctx).instances)
    done: list[str] = []
    for k, inst in enumerate(insts):
        try:
            done.append(act(inst))
        except RoleSwapError as e:
            untouched = insts[k + (0 if not getattr(e, "sent", True) else 1):]
            ctx.remember(**{key: [i.name for i in untouched]})
            raise
    return done


def _restore(sw: HaproxySwitch, ctx: SwapContext, key: str, role: str, server: str,
             check_other: str | None) -> str:
    """Undo: ``server``'s entry back to its recorded state on every instance the step may
    have reached; with ``check_other``, first require that server's entry not be ready."""
    before = ctx.state.get("haproxy_before") or {}
    skip = set(ctx.state.get(key) or [])
    done = []
    for inst in sw.settings(ctx).instances:
        if inst.name in skip:
            continue
        api = sw.api(inst)
        want = (before.get(inst.name) or {}).get(role) or ("ready" if role == "from" else "maint")
        if want not in ("ready", "drain", "maint"):
            want = "maint"  # "down" was a ready entry whose check failed: never re-ready blindly
        if check_other is not None and want != "maint":
            other = _state_of(api.servers(), sw.entry(ctx, check_other), inst)
            if other in ("ready", "down", "drain"):
                raise StepError(f"HAProxy {inst.name}: {check_other}'s entry is still {other}; not "
                                f"making {server}'s ready (never two ready entries)",
                                remedy=f"set {inst.backend}/{sw.entry(ctx, check_other)} to maint "
                                       f"there by hand, then `roleswap recover`; {DOC}")
        entry = sw.entry(ctx, server)
        cmds = [cmd_set(inst.backend, entry, want)]
        if want == "maint":
            cmds.append(cmd_shutdown(inst.backend, entry))
        api.write(*cmds)
        done.append(f"{inst.name} {want}")
    return f"{server}'s entry restored: " + (", ".join(done) or "nothing was changed")


class HaproxyMaint(Step):
    name = "haproxy-maint"

    def __init__(self, sw: HaproxySwitch) -> None:
        self.sw = sw

    def title(self, ctx: SwapContext) -> str:
        names = ", ".join(i.name for i in self.sw.settings(ctx).instances)
        return f"HAProxy ({names}): {ctx.source}'s entry to maint, shut its sessions down"

    def apply(self, ctx: SwapContext) -> str:
        t0 = time.perf_counter()
        _before(self.sw, ctx)
        entry = self.sw.entry(ctx, ctx.source)

        def act(inst: Instance) -> str:
            self.sw.api(inst).write(cmd_set(inst.backend, entry, "maint"),
                                    cmd_shutdown(inst.backend, entry))
            return inst.name

        done = _each(self.sw, ctx, "haproxy_maint_untouched", act)
        ctx.remember_with_end(haproxy_maint_at=time.time())
        return (f"{ctx.source} maint on {', '.join(done)} in "
                f"{(time.perf_counter() - t0) * 1000:.1f} ms")

    def undo(self, ctx: SwapContext) -> str:
        return _restore(self.sw, ctx, "haproxy_maint_untouched", "from", ctx.source, ctx.target)


class HaproxyReady(Step):
    name = "haproxy-ready"

    def __init__(self, sw: HaproxySwitch) -> None:
        self.sw = sw

    def title(self, ctx: SwapContext) -> str:
        names = ", ".join(i.name for i in self.sw.settings(ctx).instances)
        return (f"HAProxy ({names}): {ctx.target}'s entry to ready, verify a new connection "
                f"through each frontend reaches it")

    def apply(self, ctx: SwapContext) -> str:
        s, dst = self.sw.settings(ctx), ctx.target
        want = self.sw.target_id if self.sw.target_id is not None else server_id(ctx, dst)
        _before(self.sw, ctx)
        entry = self.sw.entry(ctx, dst)
        tries: dict[str, int] = {}

        def act(inst: Instance) -> str:
            self.sw.api(inst).write(cmd_set(inst.backend, entry, "ready"))
            return inst.name

        _each(self.sw, ctx, "haproxy_ready_untouched", act)
        for inst in s.instances:
            tries[inst.name] = _verify(ctx, inst, want, s.verify_timeout)
        started = ctx.state.get("haproxy_maint_at")
        move_ms = (time.time() - started) * 1000 if started else float("nan")
        ctx.remember_with_end(haproxy_move_ms=round(move_ms, 1))  # a figure, not a fact
        ctx.notes.append(f"HAProxy moved {ctx.source} -> {dst}: {move_ms:.0f} ms from maint to a "
                         f"new connection through every frontend reaching {dst}")
        ctx.notes.append(PERSIST_NOTE)
        shown = ", ".join(f"{n} (try {t})" for n, t in tries.items())
        return f"{dst} ready; new connections reached {dst} via {shown}; moved in {move_ms:.0f} ms"

    def undo(self, ctx: SwapContext) -> str:
        return _restore(self.sw, ctx, "haproxy_ready_untouched", "to", ctx.target, None)


def _verify(ctx: SwapContext, inst: Instance, want: int, timeout: float) -> int:
    """Until a new connection through ``inst``'s frontend reaches server_id ``want``;
    returns the number of tries (raises StepError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    tries, seen = 0, "nothing"
    while True:
        tries += 1
        try:
            got = probe(ctx, inst, timeout=min(1.0, timeout))
            if got == want:
                return tries
            seen = f"server_id {got}"
        except RoleSwapError as e:
            seen = e.message
        if time.monotonic() > deadline:
            host, port = inst.frontend
            raise StepError(f"a new connection through HAProxy {inst.name} ({host}:{port}) did "
                            f"not reach {ctx.target} (server_id {want}) within {timeout:g}s; "
                            f"last: {seen}",
                            remedy=f"check backend {inst.backend} there (`show servers state "
                                   f"{inst.backend}`), its health checks and frontend; {DOC}")
        time.sleep(0.005)


def haproxy_status(config: Config) -> list[dict[str, Any]]:
    """Each instance's view of its writes backend, for `roleswap status` (never raises)."""
    sw = HaproxySwitch()
    rows: list[dict[str, Any]] = []
    try:
        insts = sw.settings(config).instances
    except RoleSwapError as e:
        return [{"name": "haproxy", "error": e.message, "remedy": e.remedy}]
    by_entry = {e: n for n, e in sw.settings(config).servers.items()}
    try:
        for inst in insts:
            row: dict[str, Any] = {"name": inst.name, "api": inst.api, "backend": inst.backend}
            try:
                found = sw.api(inst).servers()
                row["servers"] = {e: {"state": st.state, "server": by_entry.get(e)}
                                  for e, st in found.items()}
                row["ready"] = [e for e, st in found.items() if st.state in ("ready", "drain")]
            except RoleSwapError as e:
                row.update(error=e.message, remedy=e.remedy)
            rows.append(row)
    finally:
        sw.close()
    return rows
