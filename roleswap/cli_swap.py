"""The CLI's swap and recover commands: options in, the API called, the outcome rendered.

No swap logic lives here: :class:`roleswap.api.Cluster` decides and acts; this module
maps the command line onto it, asks for confirmation and renders (see
:mod:`roleswap.render`).  Returns the process exit code.
"""

from __future__ import annotations

from typing import Any

import click

from roleswap.api import SWAP_OPTION_DEFAULTS, Cluster, NotConfirmedError
from roleswap.config import Config
from roleswap.errors import RoleSwapError
from roleswap.maintain import RunbookResult
from roleswap.render import Renderer, swap_summary
from roleswap.swap.recover import RecoverReport
from roleswap.swap.runner import SwapResult


def swap_options(cli_opts: dict[str, Any]) -> dict[str, Any]:
    """The API's keyword options from click's parameters (``--switch`` is ``switch_method``)."""
    out = {k: cli_opts[k] for k in SWAP_OPTION_DEFAULTS if k in cli_opts}
    out["switch"] = cli_opts.get("switch_method")
    return out


def run_swap(config: Config, source: str, target: str | None, mode: str, cli_opts: dict[str, Any]) -> int:
    r = Renderer(mode)
    cluster = Cluster(config)
    opts = swap_options(cli_opts)
    try:
        if cli_opts.get("check") or cli_opts.get("dry_run"):
            res = cluster.check(source, target, on_event=r.on_event, **opts)
            if res.error is not None:
                r.failed(res.error, res.as_dict())
                return res.error.exit_code
            if cli_opts.get("check"):
                r.say("preflight passed; nothing changed (--check)")
            else:
                r.show_plan()
                r.say("dry run: nothing changed")
            r.done(res.as_dict())
            return 0

        def confirm(checked: Any) -> bool:
            r.show_plan()
            return bool(cli_opts.get("yes")) or r.confirm(
                f"Swap roles: promote {checked.target}, demote {checked.source}?")

        result = cluster.swap(source, target, on_event=r.on_event, confirm=confirm, **opts)
    except NotConfirmedError:
        r.say("aborted; nothing changed")
        return 1
    except RoleSwapError as e:
        if isinstance(e.result, SwapResult) and not r.machine:
            for n in e.result.notes:
                click.secho(f"note: {n}", fg="yellow")
        r.failed(e)
        return e.exit_code
    notes, line = swap_summary(result)
    if not r.machine:
        for n in notes:
            click.secho(f"note: {n}", fg="yellow")
        click.secho(line, fg="green")
    r.done()
    return 0


_RECOVERED = {"finish": "swap finished; {target} is the primary",
              "roll back": "rolled back; {source} is the primary",
              "abandon": "journal closed (abandoned); no server was changed"}


def run_recover(config: Config, *, yes: bool, mode: str, abandon: bool = False) -> int:
    """`roleswap recover`: what recover saw and decided, a question, the outcome."""
    r = Renderer(mode)

    def confirm(rep: RecoverReport) -> bool:
        if yes:
            return True
        d = rep.decision
        action = d.action if d else "recover"
        question = (f"{action.capitalize()} swap {rep.swap_id}?" if rep.swap_id
                    else f"Make {rep.primary} writable?")
        return r.confirm(question)

    try:
        rep = Cluster(config).recover(abandon=abandon, on_event=r.on_event, confirm=confirm)
    except NotConfirmedError:
        r.say("aborted; nothing changed")
        r.done()
        return 1
    except RoleSwapError as e:
        r.failed(e)
        return e.exit_code
    if not r.machine:
        for n in rep.notes:
            click.echo(f"  {n}")
        action = rep.decision.action if rep.decision else "none"
        if action == "none":
            click.echo("no interrupted swap: nothing to recover")
        elif action == "reopen":
            click.secho(f"recovered: {rep.detail}", fg="green")
        else:
            what = _RECOVERED.get(action, action).format(target=rep.target, source=rep.source)
            click.secho(f"recovered: {what}", fg="green")
    r.done()
    return 0


def run_runbook(config: Config, kind: str, *, server: str | None, cmd: str, swap_back: bool,
                to: str | None, yes: bool, mode: str, cli_opts: dict[str, Any]) -> int:
    """`roleswap maintain` / `roleswap rolling`: the plan, a question, every step, the outcome."""
    r = Renderer(mode)
    cluster = Cluster(config)
    opts = {k: v for k, v in swap_options(cli_opts).items() if v is not None}

    def confirm(plan: list[dict[str, str]]) -> bool:
        return yes or r.confirm(f"Run this {kind} runbook ({len(plan)} steps)?")

    try:
        if kind == "maintain":
            assert server is not None
            res = cluster.maintain(server, cmd, swap_back=swap_back, to=to, on_event=r.on_event,
                                   confirm=confirm, **opts)
        else:
            res = cluster.rolling(cmd, to=to, on_event=r.on_event, confirm=confirm, **opts)
    except NotConfirmedError:
        r.say("aborted; nothing changed")
        return 1
    except RoleSwapError as e:
        r.failed(e, e.result.as_dict() if isinstance(e.result, RunbookResult) else None)
        return e.exit_code
    if not r.machine:
        swaps = ", ".join(f"{s.source}->{s.target} (pause {s.pause_ms or 0:.1f} ms)" for s in res.swaps)
        click.secho(f"done: {kind} runbook {res.runbook_id}, {len(res.steps)} steps"
                    f"{'; swaps ' + swaps if swaps else ''}", fg="green")
    r.done(res.as_dict())
    return 0
