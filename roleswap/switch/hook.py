"""``hook``: run user commands at fixed points, with the topology in the environment.

Config::

    [hooks]
    before_fence = "/usr/local/bin/drain-writers"       # failure aborts (rolled back)
    after_promote = "/usr/local/bin/point-proxy-at-new"  # failure rolls back
    after_promote_undo = "/usr/local/bin/point-proxy-at-old"
    after_resume = "/usr/local/bin/notify"               # failure is reported only
    timeout = 30

Commands are split with :func:`shlex.split` and run WITHOUT a shell; values
reach them only as environment variables (ROLESWAP_FROM, ROLESWAP_TO,
ROLESWAP_FROM_HOST, ROLESWAP_FROM_PORT, ROLESWAP_TO_HOST, ROLESWAP_TO_PORT,
ROLESWAP_CLUSTER, ROLESWAP_PHASE, ROLESWAP_SWAP_ID) — never interpolated.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from typing import TYPE_CHECKING

from roleswap.errors import StepError
from roleswap.swap.step import Step
from roleswap.switch.base import PHASES, SwitchMethod

if TYPE_CHECKING:
    from roleswap.swap.check import Check
    from roleswap.swap.context import SwapContext

HOOK_PHASES = ("before_fence", "after_promote", "after_resume")


def hook_env(ctx: SwapContext, phase: str) -> dict[str, str]:
    src, dst = ctx.server(ctx.source), ctx.server(ctx.target)
    env = dict(os.environ)
    env.update({
        "ROLESWAP_CLUSTER": ctx.config.cluster, "ROLESWAP_PHASE": phase,
        "ROLESWAP_SWAP_ID": ctx.swap_id,
        "ROLESWAP_FROM": src.name, "ROLESWAP_FROM_HOST": src.host, "ROLESWAP_FROM_PORT": str(src.port),
        "ROLESWAP_TO": dst.name, "ROLESWAP_TO_HOST": dst.host, "ROLESWAP_TO_PORT": str(dst.port),
    })
    return env


def run_hook(ctx: SwapContext, phase: str, command: str) -> str:
    timeout = float(ctx.config.hooks.get("timeout", 30))
    try:
        res = subprocess.run(shlex.split(command), env=hook_env(ctx, phase), capture_output=True,
                             text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StepError(f"hook {phase} could not run: {type(e).__name__}: {e}",
                        remedy=f"check hooks.{phase} in {ctx.config.source}") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        raise StepError(f"hook {phase} exited with {res.returncode}: {tail[0][:200]}",
                        remedy=f"fix the hook command (hooks.{phase}) or what it checks")
    return f"exit 0 ({res.stdout.strip().splitlines()[-1][:80] if res.stdout.strip() else 'no output'})"


class Hook(Step):
    def __init__(self, phase: str, command: str, undo_command: str | None) -> None:
        self.name = f"hook:{phase}"
        self.phase = phase
        self.command = command
        self.undo_command = undo_command
        self.reversible = undo_command is not None

    def title(self, ctx: SwapContext) -> str:
        return f"run hook {self.phase}: {shlex.split(self.command)[0]}"

    def apply(self, ctx: SwapContext) -> str:
        return run_hook(ctx, self.phase, self.command)

    def undo(self, ctx: SwapContext) -> str:
        if not self.undo_command:
            return "no undo hook"
        return run_hook(ctx, self.phase + "_undo", self.undo_command)


class HookSwitch(SwitchMethod):
    name = "hook"

    def _commands(self, ctx: SwapContext) -> dict[str, str]:
        return {p: ctx.config.hooks[p] for p in HOOK_PHASES if ctx.config.hooks.get(p)}

    def preflight(self, ctx: SwapContext) -> list[Check]:
        from roleswap.swap.check import Check

        cmds = self._commands(ctx)
        if not cmds:
            return [Check.fail("hooks", "switch.method = hook but [hooks] defines none of "
                               + ", ".join(HOOK_PHASES), "add at least one hook command")]
        checks = []
        for phase, cmd in cmds.items():
            try:
                argv0 = shlex.split(cmd)[0]
            except (ValueError, IndexError):
                checks.append(Check.fail(f"hook:{phase}", "cannot parse the command",
                                         f"fix hooks.{phase}"))
                continue
            if shutil.which(argv0) is None:
                checks.append(Check.fail(f"hook:{phase}", f"{argv0} is not an executable",
                                         f"fix hooks.{phase} (absolute path, executable bit)"))
            else:
                checks.append(Check.ok(f"hook:{phase}", argv0))
        return checks

    def steps(self, ctx: SwapContext) -> dict[str, list[Step]]:
        out: dict[str, list[Step]] = {p: [] for p in PHASES}
        for phase, cmd in self._commands(ctx).items():
            out[phase].append(Hook(phase, cmd, ctx.config.hooks.get(f"{phase}_undo")))
        return out
