"""The Python API: the one entry point the CLI, the pytest plugin and runbooks use.

    from roleswap import Cluster

    cluster = Cluster.from_config("roleswap.toml")
    cluster.status().writable()                       # a fresh, immutable topology
    res = cluster.swap("db1", "db2", max_lag=2.0)     # SwapResult; raises on failure
    print(res.pause_ms, [(s.name, s.status, s.ms) for s in res.steps])

Options are keyword arguments with the CLI's names and defaults (``--max-lag`` is
``max_lag``, ``--no-pause`` is ``no_pause``, ``--switch`` is ``switch``); an unknown or
out-of-range option raises :class:`UsageError` naming the valid ones.  Failures raise
the usual :class:`~roleswap.errors.RoleSwapError` subclasses, each with ``remedy`` and
``exit_code`` (PreflightError: refused, nothing changed; RolledBackError: failed and
rolled back; AfterPointOfNoReturnError, RollbackIncompleteError: run :meth:`recover`),
with what was done attached as ``error.result``.  Progress arrives as typed events
(:mod:`roleswap.events`) through ``on_event``.  Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roleswap.config import SWITCH_METHODS, Config, load_config, parse_config
from roleswap.errors import RoleSwapError, UsageError
from roleswap.events import (
    CheckDone,
    Event,
    Finished,
    OnEvent,
    PlanReady,
    RunbookPlanned,
    StepDone,
    SwapBegins,
    TargetChosen,
)
from roleswap.mysql.topology import Topology, read_topology
from roleswap.swap import flow
from roleswap.swap.check import Check
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.flow import PlanLine
from roleswap.swap.recover import RecoverReport
from roleswap.swap.recover_flow import recover as run_recover
from roleswap.swap.runner import SwapResult

if TYPE_CHECKING:
    from roleswap.maintain import RunbookResult
from roleswap.swap.target import choose_target
from roleswap.switch import make_switch

__all__ = ["SWAP_OPTION_DEFAULTS", "CheckResult", "Cluster", "NotConfirmedError", "RecoverReport",
           "SwapResult"]

# The CLI's swap options and defaults (cli.py reads its defaults from here).
SWAP_OPTION_DEFAULTS: dict[str, Any] = {
    "switch": None,  # None: switch.method from the config
    "no_pause": False,
    "max_lag": 5.0,
    "drain_timeout": 5.0,
    "drain_policy": "proceed",
    "catchup_timeout": 10.0,
    "pause_ttl": 30.0,
    "fence_timeout": 2,
    "long_trx": 10.0,
    "kill_privileged": False,
}
# option -> (smallest allowed value, what to say)
_MINIMUM = {"max_lag": 0.0, "drain_timeout": 0.0, "catchup_timeout": 0.1, "pause_ttl": 1.0,
            "fence_timeout": 1, "long_trx": 0.0}

Confirm = Callable[["CheckResult"], bool]
ConfirmPlan = Callable[[list[dict[str, str]]], bool]  # a runbook's plan


class NotConfirmedError(RoleSwapError):
    """The ``confirm`` callback said no; nothing was changed."""

    exit_code = 1


@dataclass(frozen=True)
class CheckResult:
    """Preflight's verdict for one swap (never writes); ``plan`` is empty when refused."""

    source: str
    target: str
    mode: str
    checks: tuple[Check, ...]
    plan: tuple[PlanLine, ...]
    error: RoleSwapError | None = None  # the PreflightError when refused

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "from": self.source, "to": self.target,
                               "checks": [c.as_dict() for c in self.checks]}
        if self.plan:
            out["plan"] = [line.as_dict() for line in self.plan]
        if self.error is not None:
            out.update(rolled_back=False, error=self.error.as_dict())
        return out


class Cluster:
    """One configured cluster.  Every call reads the servers afresh; nothing is cached."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any]) -> Cluster:
        """From a TOML file, or from the parsed mapping (relative paths then resolve
        against the current directory).  Raises ConfigError naming what is wrong."""
        if isinstance(source, Mapping):
            return cls(parse_config(dict(source)))
        return cls(load_config(source))

    # -- reading --------------------------------------------------------------------
    def status(self) -> Topology:
        """Every configured server as it answers now (unreachable ones say why)."""
        return read_topology(self.config)

    def status_data(self) -> dict[str, Any]:
        """What ``roleswap status --json`` prints: topology, health, interrupted swap."""
        from roleswap.status import status_data

        return status_data(self.config)

    # -- swapping -------------------------------------------------------------------
    def options(self, **options: Any) -> SwapOptions:
        """The engine's options from the CLI's names (validated; unknown names refused)."""
        unknown = sorted(set(options) - set(SWAP_OPTION_DEFAULTS))
        if unknown:
            raise UsageError(f"unknown swap option(s): {', '.join(unknown)}",
                             remedy=f"use: {', '.join(SWAP_OPTION_DEFAULTS)}")
        o = {**SWAP_OPTION_DEFAULTS, **options}
        for name, low in _MINIMUM.items():
            v = o[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or v < low:
                raise UsageError(f"{name} = {v!r} must be a number >= {low:g}",
                                 remedy=f"e.g. {name}={SWAP_OPTION_DEFAULTS[name]!r}")
        if not isinstance(o["fence_timeout"], int):
            raise UsageError(f"fence_timeout = {o['fence_timeout']!r} must be whole seconds",
                             remedy="e.g. fence_timeout=2")
        if o["drain_policy"] not in ("abort", "proceed"):
            raise UsageError(f"drain_policy = {o['drain_policy']!r}", remedy='use "abort" or "proceed"')
        if o["switch"] is not None and o["switch"] not in SWITCH_METHODS:
            raise UsageError(f"switch = {o['switch']!r} is not a switch method",
                             remedy=f"use one of: {', '.join(SWITCH_METHODS)}")
        for flag in ("no_pause", "kill_privileged"):
            if not isinstance(o[flag], bool):
                raise UsageError(f"{flag} must be True or False", remedy=f"e.g. {flag}=True")
        return SwapOptions(
            switch_method=o["switch"] or self.config.switch_method, pause=not o["no_pause"],
            max_lag=float(o["max_lag"]), drain_timeout=float(o["drain_timeout"]),
            drain_policy=o["drain_policy"], catchup_timeout=float(o["catchup_timeout"]),
            pause_ttl=float(o["pause_ttl"]), fence_timeout=o["fence_timeout"],
            long_trx=float(o["long_trx"]), kill_privileged=o["kill_privileged"])

    def check(self, source: str, target: str | None = None, *, on_event: OnEvent | None = None,
              **options: Any) -> CheckResult:
        """Preflight (and the plan) for ``source -> target``.  Never writes.  Returns the
        result also when refused (``ok`` False, ``error`` the PreflightError)."""
        emit = on_event or _ignore
        opts = self.options(**options)
        target = target or self._choose(source, emit)
        ctx = self._context(source, target, opts)
        try:
            checked = self._prepare(ctx, emit)[1]
        finally:
            ctx.close()
        emit(Finished(checked.as_dict()))
        return checked

    def swap(self, source: str, target: str | None = None, *, on_event: OnEvent | None = None,
             confirm: Confirm | None = None, **options: Any) -> SwapResult:
        """Swap roles: promote ``target`` (default: the best direct replica of ``source``,
        see :mod:`roleswap.swap.target`), demote ``source``.  ``confirm`` sees the passed
        preflight and plan and may say no (NotConfirmedError, nothing changed)."""
        emit = on_event or _ignore
        opts = self.options(**options)
        target = target or self._choose(source, emit)
        ctx = self._context(source, target, opts)
        try:
            prepared, checked = self._prepare(ctx, emit)
            if checked.error is not None:
                emit(Finished(checked.as_dict()))
                checked.error.result = checked
                raise checked.error
            if confirm is not None and not confirm(checked):
                raise NotConfirmedError("aborted; nothing changed", remedy="")
            base = {"from": ctx.source, "to": ctx.target, "checks": [c.as_dict() for c in checked.checks]}
            try:
                result = flow.run(ctx, prepared, lambda r: emit(StepDone(r)))
            except RoleSwapError as e:  # the lock was taken by another swap: nothing changed
                emit(Finished({"ok": False, **base, "rolled_back": False, "error": e.as_dict()}))
                raise
            emit(Finished({**base, **result.as_dict()}))
            if result.error is not None:
                result.error.result = result
                raise result.error
            return result
        finally:
            ctx.close()

    def recover(self, *, abandon: bool = False, on_event: OnEvent | None = None,
                confirm: Callable[[RecoverReport], bool] | None = None) -> RecoverReport:
        """Finish or roll back an interrupted swap (or reopen a primary that restarted
        read-only), deciding from what the servers say now plus the journal's intent.
        Idempotent.  Raises the report's error (ManualInterventionError: exit 7...)."""
        emit = on_event or _ignore
        rep = run_recover(self.config, abandon=abandon, emit=emit,
                          confirm=confirm or (lambda _r: True))
        emit(Finished(rep.as_dict()))
        if rep.declined:
            err = NotConfirmedError("aborted; nothing changed", remedy="")
            err.result = rep
            raise err
        if rep.error is not None:
            rep.error.result = rep
            raise rep.error
        return rep

    # -- runbooks ---------------------------------------------------------------------
    def maintain(self, server: str, run: str, *, swap_back: bool = False, to: str | None = None,
                 on_event: OnEvent | None = None, confirm: ConfirmPlan | None = None,
                 **options: Any) -> RunbookResult:
        """Maintain ``server`` with the shell command ``run`` (see :mod:`roleswap.maintain`):
        swap away first if it is the primary, run, wait until it replicates and has caught
        up, and with ``swap_back`` make it the primary again.  Swap options as for
        :meth:`swap`.  Raises the first failure (RunbookError: exit 9, or the swap's own)."""
        from roleswap import maintain as mt

        self.options(**options)  # refuse bad options before anything runs
        plan = mt.plan_maintain(self, server, swap_back=swap_back, to=to)
        return self._runbook("maintain", plan, run, on_event, confirm, options)

    def rolling(self, run: str, *, to: str | None = None, on_event: OnEvent | None = None,
                confirm: ConfirmPlan | None = None, **options: Any) -> RunbookResult:
        """:meth:`maintain` every replica one at a time, then the primary (swapped away to
        ``to`` or the best replica, and back)."""
        from roleswap import maintain as mt

        self.options(**options)
        return self._runbook("rolling", mt.plan_rolling(self, to=to), run, on_event, confirm, options)

    def _runbook(self, kind: str, plan: list[dict[str, str]], run: str, on_event: OnEvent | None,
                 confirm: ConfirmPlan | None, options: dict[str, Any]) -> RunbookResult:
        from roleswap import maintain as mt

        emit = on_event or _ignore
        if not run.strip():
            raise UsageError("the runbook needs a command (--run CMD)",
                             remedy="e.g. --run 'systemctl restart mariadb'")
        emit(RunbookPlanned(kind, tuple(plan)))
        if confirm is not None and not confirm(plan):
            raise NotConfirmedError("aborted; nothing changed", remedy="")
        res = mt.execute(self, kind, plan, run, emit, options)
        emit(Finished(res.as_dict()))
        return res

    # -- internals ------------------------------------------------------------------
    def _context(self, source: str, target: str, opts: SwapOptions) -> SwapContext:
        ctx = SwapContext(self.config, source, target, opts)
        try:
            ctx.switch = make_switch(opts.switch_method)
        except BaseException:
            ctx.close()
            raise
        return ctx

    def _prepare(self, ctx: SwapContext, emit: OnEvent) -> tuple[flow.Prepared, CheckResult]:
        prepared = flow.prepare(ctx)
        emit(SwapBegins(ctx.source, ctx.target, ctx.config.cluster, ctx.opts.switch_method,
                        ctx.opts.pause, prepared.mode))
        for c in prepared.checks:
            emit(CheckDone(c))
        err = None if prepared.ok else prepared.refusal()
        checked = CheckResult(ctx.source, ctx.target, prepared.mode, prepared.checks, prepared.plan, err)
        if prepared.ok:
            emit(PlanReady(prepared.mode, prepared.plan))
        return prepared, checked

    def _choose(self, source: str, emit: OnEvent) -> str:
        choice = choose_target(self.config, self.status(), source)
        emit(TargetChosen(choice.target, choice.reason, choice.others))
        return choice.target


def _ignore(_event: Event) -> None:
    return None
