"""CLI glue for a swap and for recovery: preflight, plan, confirmation, output, exit code."""

from __future__ import annotations

import json
from typing import Any

import click

from roleswap.cli import echo_error
from roleswap.config import Config
from roleswap.errors import PreflightError, RoleSwapError
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.plan import build_plan
from roleswap.swap.preflight import Check, run_preflight
from roleswap.swap.runner import StepResult, SwapResult, execute
from roleswap.switch import make_switch

_MARK = {"ok": click.style("ok  ", fg="green"), "warn": click.style("WARN", fg="yellow"),
         "fail": click.style("FAIL", fg="red")}
_STATUS_COLOR = {"done": "green", "failed": "red", "undone": "yellow", "undo-failed": "red"}


def options_from_cli(config: Config, opts: dict[str, Any]) -> SwapOptions:
    return SwapOptions(
        switch_method=opts.get("switch_method") or config.switch_method,
        pause=not opts.get("no_pause", False),
        max_lag=float(opts.get("max_lag", 5.0)),
        drain_timeout=float(opts.get("drain_timeout", 5.0)),
        drain_policy=str(opts.get("drain_policy", "proceed")),
        catchup_timeout=float(opts.get("catchup_timeout", 10.0)),
        pause_ttl=float(opts.get("pause_ttl", 30.0)),
        fence_timeout=int(opts.get("fence_timeout", 2)),
        long_trx=float(opts.get("long_trx", 10.0)),
        kill_privileged=bool(opts.get("kill_privileged", False)),
    )


def print_checks(checks: list[Check]) -> None:
    click.echo("preflight")
    for c in checks:
        click.echo(f"  {_MARK[c.status]}  {c.name:<22} {c.message}")
        if c.remedy and c.status != "ok":
            click.echo(f"        {'':<22} fix: {c.remedy}")


def print_step(r: StepResult) -> None:
    status = click.style(f"{r.status:<11}", fg=_STATUS_COLOR.get(r.status))
    click.echo(f"  {r.name:<16} {status} {r.ms:9.1f} ms  {r.detail}")


def run_swap_command(config: Config, source: str, target: str, cli_opts: dict[str, Any]) -> int:
    as_json = bool(cli_opts.get("as_json"))
    opts = options_from_cli(config, cli_opts)
    ctx = SwapContext(config, source, target, opts)
    try:
        ctx.switch = make_switch(opts.switch_method)
        return _run(ctx, cli_opts, as_json)
    finally:
        ctx.close()


def _run(ctx: SwapContext, cli_opts: dict[str, Any], as_json: bool) -> int:
    say = (lambda *_a, **_k: None) if as_json else click.echo
    checks, _topo = run_preflight(ctx)
    failed = [c for c in checks if c.status == "fail"]
    mode = ctx.journal.record.get("state", {}).get("mode", "?")
    if not as_json:
        click.echo(f"roleswap {ctx.source} -> {ctx.target}  (cluster {ctx.config.cluster}, "
                   f"switch {ctx.opts.switch_method}, {mode}, "
                   f"{'pause' if ctx.opts.pause else 'no pause'})")
        print_checks(checks)
    plan = build_plan(ctx) if not failed else []
    base: dict[str, Any] = {"from": ctx.source, "to": ctx.target,
                            "checks": [c.as_dict() for c in checks]}
    if failed:
        err = PreflightError(f"preflight refused the swap: {failed[0].message}"
                             + (f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""),
                             remedy=failed[0].remedy)
        _finish_error(err, as_json, base)
        return err.exit_code
    plan_lines = [{"step": s.name, "title": s.title(ctx), "undo": s.reversible} for s in plan]
    if cli_opts.get("check"):
        if as_json:
            click.echo(json.dumps({"ok": True, **base}))
        else:
            click.echo("preflight passed; nothing changed (--check)")
        return 0
    if not as_json:
        click.echo("plan")
        for i, line in enumerate(plan_lines, 1):
            tag = "" if line["undo"] else "  (no undo needed)"
            click.echo(f"  {i:2}. {line['step']:<16} {line['title']}{tag}")
    if cli_opts.get("dry_run"):
        if as_json:
            click.echo(json.dumps({"ok": True, **base, "plan": plan_lines}))
        else:
            click.echo("dry run: nothing changed")
        return 0
    if not cli_opts.get("yes") and not click.confirm(
            f"Swap roles: promote {ctx.target}, demote {ctx.source}?", default=False,
            err=as_json):
        say("aborted; nothing changed")
        return 1
    # The cluster lock BEFORE the journal: a swap that lost the race must not overwrite
    # the winner's journal (recover reads it if the winner crashes).
    lock_err = _take_lock_first(ctx)
    if lock_err is not None:
        _finish_error(lock_err, as_json, base)
        return lock_err.exit_code
    ctx.journal.begin(ctx.swap_id, ctx.source, ctx.target, mode, [s.name for s in plan],
                      ctx.opts.as_dict())
    say("swap")
    result = execute(ctx, plan, (lambda _r: None) if as_json else print_step)
    return report(result, as_json, base)


def _take_lock_first(ctx: SwapContext) -> RoleSwapError | None:
    """Acquire the cluster lock now (the Lock step then finds it held); an error when
    another swap holds it.  Nothing is written anywhere else."""
    import redis

    from roleswap.swap.steps_traffic import cluster_lock

    try:
        lock = cluster_lock(ctx)
        if lock is None:
            return None  # --no-pause without Redis: no lock (preflight warned)
        if not lock.acquire(ctx.swap_id):
            holder = lock.holder() or {}
            return PreflightError(
                f"another swap took the cluster lock after preflight (swap {holder.get('swap_id')} "
                f"on {holder.get('host')}, pid {holder.get('pid')}); nothing was changed",
                remedy="wait for it to finish, then check `roleswap status`")
    except redis.RedisError as e:
        return PreflightError(f"could not take the cluster lock: Redis {type(e).__name__}; "
                              "nothing was changed",
                              remedy=f"check [redis] url in {ctx.config.source}")
    except RoleSwapError as e:
        return e
    ctx.journal.record.setdefault("state", {})["lock_token"] = lock.token
    return None


def report(result: SwapResult, as_json: bool, base: dict[str, Any]) -> int:
    if as_json:
        click.echo(json.dumps({**base, **result.as_dict()}))
    else:
        for n in result.notes:
            click.secho(f"note: {n}", fg="yellow")
        pause = f"{result.pause_ms:.1f} ms" if result.pause_ms is not None else "n/a"
        block = f"{result.write_block_ms:.1f} ms" if result.write_block_ms is not None else "n/a"
        if result.ok:
            click.secho(f"done: {result.target} is the primary, {result.source} replicates from it. "
                        f"pause {pause}, writes blocked {block}, total {result.total_ms:.0f} ms",
                        fg="green")
        elif result.error is not None:
            echo_error(result.error)
    return 0 if result.error is None else result.error.exit_code


def _finish_error(err: RoleSwapError, as_json: bool, base: dict[str, Any]) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, **base, "rolled_back": False, "error": err.as_dict()}))
    else:
        echo_error(err)


def run_recover_command(config: Config, *, yes: bool, as_json: bool, abandon: bool = False) -> int:
    """`roleswap recover`: show what recover saw and decided, ask, converge, report."""
    from roleswap.swap.recover import load_interrupted, run_recover

    record = load_interrupted(config)
    if record is None:
        if abandon:
            say = (lambda *_a: None) if as_json else click.echo
            say("no interrupted swap: nothing to abandon")
        return _recover_without_journal(config, yes=yes, as_json=as_json)

    def confirm(rep: Any) -> bool:
        d = rep.decision
        if not as_json:
            click.echo(f"interrupted swap {rep.swap_id}: {rep.source} -> {rep.target}, "
                       f"last step {rep.last_step}")
            click.echo(f"recover will {d.action}: {d.reason}")
        if yes or click.confirm(f"{d.action.capitalize()} swap {rep.swap_id}?", default=False,
                                err=as_json):
            return True
        (click.echo if not as_json else lambda *_a: None)("aborted; nothing changed")
        return False

    show = (lambda _r: None) if as_json else print_step
    rep = run_recover(config, record, show=show, confirm=confirm, abandon=abandon)
    if as_json:
        click.echo(json.dumps(rep.as_dict()))
    elif rep.error is not None:
        if rep.decision is not None and rep.decision.action == "manual":
            click.echo(f"interrupted swap {rep.swap_id}: {rep.source} -> {rep.target}, "
                       f"last step {rep.last_step}")
        echo_error(rep.error)
    elif rep.decision is not None and rep.result is None and rep.decision.action != "abandon":
        return 1  # not confirmed
    else:
        for n in rep.notes:
            click.echo(f"  {n}")
        action = rep.decision.action if rep.decision else ""
        what = {"finish": f"swap finished; {rep.target} is the primary",
                "roll back": f"rolled back; {rep.source} is the primary",
                "abandon": "journal closed (abandoned); no server was changed"}.get(action, action)
        click.secho(f"recovered: {what}", fg="green")
    return 0 if rep.error is None else rep.error.exit_code


def _recover_without_journal(config: Config, *, yes: bool, as_json: bool) -> int:
    """No interrupted swap: nothing to do, unless no server is writable (a primary that
    crashed and came back read-only), which recover can reopen (see swap/reopen.py)."""
    from roleswap.swap import reopen as ro

    ctx = ro.context(config)
    try:
        verdict = ro.find_reopen(ctx, ctx.topology())
        if verdict is None:
            if as_json:
                click.echo(json.dumps({"ok": True, "action": "none"}))
            else:
                click.echo("no interrupted swap: nothing to recover")
            return 0
        if verdict.primary is None:
            err = ro.reopen_problem_error(verdict)
            _finish_error(err, as_json, {"action": "manual"})
            return err.exit_code
        name = verdict.primary
        if not as_json:
            click.echo(f"no interrupted swap, but no server is writable: every replica follows "
                       f"{name}, which holds every transaction they hold (it restarted read-only?)")
            click.echo(f"recover will make {name} writable again")
        if not yes and not click.confirm(f"Make {name} writable?", default=False, err=as_json):
            (click.echo if not as_json else lambda *_a: None)("aborted; nothing changed")
            return 1
        try:
            detail = ro.reopen(config, name, ctx)
        except RoleSwapError as e:
            _finish_error(e, as_json, {"action": "reopen", "primary": name})
            return e.exit_code
        if as_json:
            click.echo(json.dumps({"ok": True, "action": "reopen", "primary": name,
                                   "detail": detail}))
        else:
            click.secho(f"recovered: {detail}", fg="green")
        return 0
    finally:
        ctx.close()
