"""How the CLI shows the API's events and results: text, ``--json`` or ``--events``.

Text: the familiar preflight / plan / swap blocks.  ``--json``: nothing while it runs,
then one JSON object (the ``result`` event's payload).  ``--events``: every event as
one JSON object per line, as it happens (NDJSON, for CI logs); the last line is the
``result``.  In both machine modes prompts go to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from roleswap.errors import RoleSwapError
from roleswap.events import (
    CheckDone,
    Event,
    Finished,
    PlanReady,
    RecoverDecided,
    RunbookPlanned,
    RunbookProgress,
    RunbookStepDone,
    StepDone,
    SwapBegins,
    TargetChosen,
)

if TYPE_CHECKING:
    from roleswap.swap.flow import PlanLine

_MARK = {"ok": click.style("ok  ", fg="green"), "warn": click.style("WARN", fg="yellow"),
         "fail": click.style("FAIL", fg="red")}
_STATUS_COLOR = {"done": "green", "failed": "red", "undone": "yellow", "undo-failed": "red"}


def echo_error(err: RoleSwapError) -> None:
    """The one way an error reaches the terminal: the problem, then how to fix it."""
    click.secho(f"error: {err.message}", fg="red", err=True)
    if err.remedy:
        click.echo(f"  fix: {err.remedy}", err=True)


class Renderer:
    """Receives every event (``on_event``) and the final outcome; mode = text/json/events."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.machine = mode != "text"
        self._in_checks = False
        self._in_steps = False
        self.final: dict[str, Any] | None = None
        self.plan_lines: tuple[PlanLine, ...] = ()  # the last PlanReady's, for show_plan

    # -- events ---------------------------------------------------------------------
    def on_event(self, ev: Event) -> None:
        if isinstance(ev, Finished):
            self.final = ev.outcome
        if self.mode == "events":
            click.echo(json.dumps(ev.as_dict(), default=str))
            return
        if self.mode == "json":
            return
        self._text(ev)

    def _text(self, ev: Event) -> None:
        if isinstance(ev, TargetChosen):
            click.echo(f"target: {ev.reason}")
            for name, why in ev.others:
                click.echo(f"        not {name}: {why}")
        elif isinstance(ev, RunbookPlanned):
            click.echo(f"runbook ({ev.runbook})")
            for i, st in enumerate(ev.steps, 1):
                click.echo(f"  {i:2}. {st['step']:<10} {st['what']}")
        elif isinstance(ev, RunbookStepDone):
            r = ev.step
            status = click.style(f"{r.status:<7}", fg=_STATUS_COLOR.get(r.status))
            click.secho(f"runbook: {r.name:<16} {status} {r.ms / 1000:8.1f} s  {r.detail}", bold=True)
        elif isinstance(ev, RunbookProgress):
            click.echo(f"  waiting for {ev.server}: {ev.state}")
        elif isinstance(ev, SwapBegins):
            self._in_checks = self._in_steps = False  # a runbook runs several swaps
            click.echo(f"roleswap {ev.source} -> {ev.target}  (cluster {ev.cluster}, switch {ev.switch}, "
                       f"{ev.mode}, {'pause' if ev.pause else 'no pause'})")
        elif isinstance(ev, CheckDone):
            if not self._in_checks:
                click.echo("preflight")
                self._in_checks = True
            c = ev.check
            click.echo(f"  {_MARK[c.status]}  {c.name:<22} {c.message}")
            if c.remedy and c.status != "ok":
                click.echo(f"        {'':<22} fix: {c.remedy}")
        elif isinstance(ev, PlanReady):
            self.plan_lines = ev.steps
        elif isinstance(ev, StepDone):
            if not self._in_steps:
                click.echo("swap")
                self._in_steps = True
            r = ev.step
            status = click.style(f"{r.status:<11}", fg=_STATUS_COLOR.get(r.status))
            click.echo(f"  {r.name:<16} {status} {r.ms:9.1f} ms  {r.detail}")
        elif isinstance(ev, RecoverDecided):
            if ev.swap_id:
                click.echo(f"interrupted swap {ev.swap_id}: {ev.source} -> {ev.target}, "
                           f"last step {ev.last_step}")
                if ev.action != "manual":
                    click.echo(f"recover will {ev.action}: {ev.reason}")
            elif ev.action == "reopen":
                click.echo(ev.reason)

    def show_plan(self) -> None:
        if self.machine:
            return
        click.echo("plan")
        for i, line in enumerate(self.plan_lines, 1):
            tag = "" if line.undo else "  (no undo needed)"
            click.echo(f"  {i:2}. {line.step:<16} {line.title}{tag}")

    # -- prompts and endings --------------------------------------------------------
    def confirm(self, question: str) -> bool:
        return click.confirm(question, default=False, err=self.machine)

    def say(self, text: str) -> None:
        """A closing line for people (text mode only)."""
        if not self.machine:
            click.echo(text)

    def done(self, outcome: dict[str, Any] | None = None) -> None:
        """End of a successful command: --json prints the outcome once."""
        if self.mode == "json":
            click.echo(json.dumps(outcome if outcome is not None else self.final, default=str))

    def failed(self, err: RoleSwapError, outcome: dict[str, Any] | None = None) -> None:
        """End of a failed command: --json prints the outcome (or the bare error)."""
        if self.mode == "json":
            out = outcome or self.final or {"ok": False, "error": err.as_dict()}
            click.echo(json.dumps(out, default=str))
        elif self.mode == "events":
            if self.final is None:  # no result event went out (e.g. a usage error)
                click.echo(json.dumps({"event": "result", "ok": False, "error": err.as_dict()}))
        else:
            echo_error(err)


def swap_summary(result: Any) -> tuple[list[str], str]:
    """(notes, the 'done:' line) of a successful swap, for text mode."""
    pause = f"{result.pause_ms:.1f} ms" if result.pause_ms is not None else "n/a"
    block = f"{result.write_block_ms:.1f} ms" if result.write_block_ms is not None else "n/a"
    return list(result.notes), (f"done: {result.target} is the primary, {result.source} replicates "
                                f"from it. pause {pause}, writes blocked {block}, "
                                f"total {result.total_ms:.0f} ms")
