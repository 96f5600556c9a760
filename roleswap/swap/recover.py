"""`roleswap recover`: finish or roll back an interrupted swap, idempotently.

Decision table (from the journal and the servers, read fresh):

==========================================  =====================================
journal says                                recover does
==========================================  =====================================
no unfinished swap                          nothing (exit 0)
point of no return passed                   run every remaining step (finish)
before it, new primary took no writes       undo every started step in reverse
before it, but the new primary HAS writes   finish instead: rolling back would
  (pause lease expired, apps wrote to it)     lose those acknowledged writes
==========================================  =====================================
"""

from __future__ import annotations

import json
from typing import Any

import click

from roleswap.config import Config
from roleswap.errors import RoleSwapError
from roleswap.swap.command import print_step, report
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.plan import build_plan, ponr_index
from roleswap.swap.runner import SwapResult, execute, rollback
from roleswap.swap.steps_db import POSITION_MODES
from roleswap.switch import make_switch


def recover(config: Config, *, yes: bool, as_json: bool) -> int:
    probe = SwapContext(config, "", "", SwapOptions())
    record = probe.journal.interrupted()
    probe.close()
    if record is None:
        if as_json:
            click.echo(json.dumps({"ok": True, "action": "none"}))
        else:
            click.echo("no interrupted swap: nothing to recover")
        return 0
    opts = SwapOptions(**{k: v for k, v in record.get("options", {}).items()
                          if k in SwapOptions.__dataclass_fields__})
    ctx = SwapContext(config, record["from"], record["to"], opts, swap_id=record["swap_id"])
    try:
        ctx.journal.adopt(record)
        ctx.switch = make_switch(opts.switch_method)
        return _recover(ctx, record, yes=yes, as_json=as_json)
    finally:
        ctx.close()


def _recover(ctx: SwapContext, record: dict[str, Any], *, yes: bool, as_json: bool) -> int:
    plan = build_plan(ctx)
    status = ctx.journal.last_status()
    ever_done = {e["name"] for e in record.get("steps", []) if e["status"] == "done"}
    p = ponr_index(plan)
    passed = plan[p].name in ever_done or any(status.get(s.name) for s in plan[p + 1:])
    started = [s for s in plan if status.get(s.name) in ("running", "done", "failed")]
    reason = "the point of no return was passed"
    if not passed and _target_took_writes(ctx, status):
        passed, reason = True, f"{ctx.target} already took writes; rolling back would lose them"
    action = "finish" if passed else "roll back"
    if not as_json:
        click.echo(f"interrupted swap {record['swap_id']}: {ctx.source} -> {ctx.target}, "
                   f"last step {record['steps'][-1]['name'] if record['steps'] else '-'} "
                   f"({record['steps'][-1]['status'] if record['steps'] else '-'})")
        click.echo(f"recover will {action}" + (f" ({reason})" if passed else ""))
    if not yes and not click.confirm(f"{action.capitalize()} swap {record['swap_id']}?",
                                     default=False, err=as_json):
        click.echo("aborted; nothing changed")
        return 1
    ctx.journal.set_phase("recovering")
    show = (lambda _r: None) if as_json else print_step
    if passed:
        start = p + 1 if plan[p].name in ever_done else p
        todo = [s for s in plan[start:] if status.get(s.name) != "done"]
        result = execute(ctx, todo, show, passed_ponr=True)
    else:
        result = SwapResult(ctx.swap_id, ctx.source, ctx.target)
        err = rollback(ctx, started, result, show,
                       RoleSwapError("recovered an interrupted swap"))
        result.rolled_back = result.rolled_back and err.exit_code == 4
        if err.exit_code != 4:
            result.error = err
    base = {"from": ctx.source, "to": ctx.target, "action": action}
    if not as_json and result.ok:
        click.secho(f"recovered: {'swap finished' if passed else 'rolled back'}; "
                    f"{ctx.target if passed else ctx.source} is the primary", fg="green")
        return 0
    return report(result, as_json, base)


def _target_took_writes(ctx: SwapContext, status: dict[str, str]) -> bool:
    """True if the half-promoted target has binlog events beyond the fenced final position."""
    if status.get("promote") is None:
        return False
    final = ctx.state.get("final_position")
    if final is None:
        return False
    mode = POSITION_MODES[ctx.state.get("mode", "gtid")]
    now = mode.read(ctx, ctx.target)
    if "gtid" in now:
        return bool(now["gtid"]) and now["gtid"] != final["gtid"]
    promoted = ctx.state.get("promoted_at")
    return promoted is not None and now != promoted


