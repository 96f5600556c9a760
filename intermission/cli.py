"""``intermission`` command line: pause, resume and inspect a scope.

Exit codes: 0 ok, 1 error (e.g. Redis unreachable), 2 usage, 3 ``--wait-drain`` timed
out (the pause stays active), 4 conflict (another pause is active / token mismatch).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click

from intermission import protocol as p
from intermission.controller import Controller, Status, describe_resume
from intermission.errors import IntermissionError, LeaseLostError, PauseConflictError
from intermission.metrics import hold_quantile
from intermission.store import ResumeOutcome

DEFAULT_URL = "redis://127.0.0.1:6379/0"
F = TypeVar("F", bound=Callable[..., Any])


def _errors(fn: F) -> F:
    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PauseConflictError as exc:
            _fail(exc, 4)
        except LeaseLostError as exc:
            _fail(exc, 4)
        except IntermissionError as exc:
            _fail(exc, 1)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc

    return run  # type: ignore[return-value]


def _fail(exc: IntermissionError, code: int) -> None:
    click.echo(f"error: {exc.message}", err=True)
    if exc.remedy:
        click.echo(f"remedy: {exc.remedy}", err=True)
    sys.exit(code)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _controller(ctx: click.Context, scope: str) -> Controller:
    return Controller(ctx.obj["url"], scope)


scope_option = click.option(
    "--scope", required=True, envvar="INTERMISSION_SCOPE", show_envvar=True,
    help="Which pause (the middlewares' scope=).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis", "url", envvar="INTERMISSION_REDIS_URL", show_envvar=True,
              default=DEFAULT_URL, show_default=True, help="Redis URL: redis://, rediss://, unix:// or "
              "redis+sentinel://[:PW@]HOST:PORT,.../MASTER[/DB] (a password is never printed).")
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """Hold web requests during maintenance: pause, resume, status."""
    ctx.obj = {"url": url}


@cli.command()
@scope_option
@click.option("--ttl", type=float, default=60.0, show_default=True,
              help="Seconds until the pause ends by itself.")
@click.option("--reason", default="", help="Shown in status.")
@click.option("--owner", default=None, help="Shown in status [default: user@host].")
@click.option("--token", default=None, help="Re-assert this pause token (idempotent retry).")
@click.option("--wait-drain", type=float, default=None, metavar="SECONDS",
              help="Wait until every process acknowledged and has 0 in flight (exit 3 "
                   "at the timeout; the pause stays active).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def pause(ctx: click.Context, scope: str, ttl: float, reason: str, owner: str | None,
          token: str | None, wait_drain: float | None, as_json: bool) -> None:
    """Start a pause that ends by itself after --ttl (NOT renewed by the CLI).

    A CLI pause is not renewed after the command exits: it keeps its TTL and ends by
    itself at expiry unless resumed first (use the Python Controller for a renewed
    pause).  Held requests wait at most the middleware's max_hold, then get a 503."""
    ctl = _controller(ctx, scope)
    handle = ctl.pause(reason, ttl, owner=owner, token=token, auto_renew=False,
                       prepare_drain=wait_drain is not None)
    lease = handle.lease
    out: dict[str, Any] = {"scope": scope, "paused": True, "lease": asdict(lease)}
    if not as_json:
        click.echo(f"paused scope {scope!r}: token {lease.token}, expires {_when(lease.expires_at)}"
                   f" (in {lease.ttl:g}s; not renewed)")
        click.echo(f"resume with: intermission resume --scope {scope} --token {lease.token}")
    code = 0
    if wait_drain is not None:
        report = handle.wait_drained(wait_drain)
        out["drain"] = report.as_dict()
        if not as_json:
            click.echo(str(report))
        code = 0 if report.drained else 3
    if as_json:
        click.echo(json.dumps(out, indent=2))
    sys.exit(code)


@cli.command()
@scope_option
@click.option("--token", default=None, help="Only end this pause (default: the active one).")
@click.option("--payload", default=None, help="JSON object delivered to on_resume hooks.")
@click.pass_context
@_errors
def resume(ctx: click.Context, scope: str, token: str | None, payload: str | None) -> None:
    """End a pause; held requests are released at once.

    If the pause key was lost (Redis restarted without persistence) while app processes
    still hold requests for the pause, the resume is published anyway and says so."""
    data = None
    if payload is not None:
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise click.BadParameter(f"--payload is not JSON: {exc}") from exc
    outcome = _controller(ctx, scope).resume(token=token, payload=data)
    messages = {
        ResumeOutcome.RESUMED: f"resumed scope {scope!r}",
        ResumeOutcome.ALREADY_RESUMED: f"scope {scope!r}: that pause was already resumed",
        ResumeOutcome.NOT_PAUSED: f"scope {scope!r} is not paused (nothing to do)",
        ResumeOutcome.TOKEN_MISMATCH: f"scope {scope!r} is paused under another token; "
                                      "it was NOT ended",
        ResumeOutcome.RESUMED_AFTER_LOSS: f"resumed scope {scope!r}: "
                                          + describe_resume(ResumeOutcome.RESUMED_AFTER_LOSS),
    }
    click.echo(messages[outcome])
    sys.exit(4 if outcome is ResumeOutcome.TOKEN_MISMATCH else 0)


@cli.command("host-agent")
@scope_option
@click.option("--dir", "directory", default="/run/intermission", show_default=True,
              envvar="INTERMISSION_HOST_AGENT", show_envvar=True,
              help="Directory shared with the app processes (their host_agent=).")
@click.pass_context
def host_agent(ctx: click.Context, scope: str, directory: str) -> None:
    """Acknowledge pauses for every app process of this host (run one per host and
    scope; the processes never wake for a pause).  Runs until SIGTERM / SIGINT."""
    import logging

    from intermission import hostagent
    from intermission.hostshm import HostModeUnavailable

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not directory.startswith("/"):
        raise click.BadParameter(f"--dir must be an absolute path; got {directory!r}")
    try:
        p.validate_scope(scope)
        hostagent.run(ctx.obj["url"], scope, directory)
    except (HostModeUnavailable, ValueError, OSError) as exc:
        click.echo(f"error: cannot run the host agent: {exc}", err=True)
        click.echo("remedy: the app processes talk to Redis themselves meanwhile; fix the "
                   "cause, or run without host_agent=", err=True)
        sys.exit(1)


@cli.command()
@scope_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def status(ctx: click.Context, scope: str, as_json: bool) -> None:
    """Show whether the scope is paused and every live process's counts."""
    st = _controller(ctx, scope).status()
    if as_json:
        click.echo(json.dumps(st.as_dict(), indent=2))
        return
    click.echo(render_status(st))


def render_status(st: Status) -> str:
    now = time.time()
    lines = [f"scope:     {st.scope}"]
    if st.lease is None:
        lines.append("state:     not paused")
        if st.last_resume is not None:
            lines.append(f"last resume: {_when(st.last_resume.at)} "
                         f"({now - st.last_resume.at:.1f}s ago, token {st.last_resume.token})")
        for token in sorted({i.acked_token for i in st.processes if i.paused and i.acked_token}):
            lines.append(f"WARNING:   processes still hold requests for pause {token}, whose key "
                         "is gone (Redis restarted?); they release at its expiry, or now with: "
                         f"intermission resume --scope {st.scope} --token {token}")
    else:
        le = st.lease
        left = st.ttl_remaining if st.ttl_remaining is not None else le.expires_at - now
        lines += [
            "state:     PAUSED",
            f"since:     {_when(le.started_at)} ({now - le.started_at:.1f}s ago)",
            f"by:        {le.owner}" + (f" - {le.reason}" if le.reason else ""),
            f"expires:   in {left:.1f}s (lease ttl {le.ttl:g}s)",
            f"token:     {le.token}",
        ]
    lines.append(f"processes: {len(st.processes)} live" + (
        f" ({st.describe_processes()}; a host agent's HELD-TOT, RELEASED, 503s and hold "
        "times stay in each app process's Prometheus metrics)" if st.host_agents else ""))
    if st.processes:
        lines.append(f"  {'ID':<34} {'KIND':<5} {'IN-FLIGHT':>9} {'HELD':>5} {'ACK':>4} "
                     f"{'HELD-TOT':>8} {'RELEASED':>8} {'503s':>5} {'HOLD-P99':>8} {'MAX':>7}")
    for info in st.processes:
        acked = "yes" if st.lease and info.acked_token == st.lease.token else "-"
        if not info.redis_ok:
            acked += "!"
        m = info.metrics
        q = hold_quantile(info.hold_buckets, 0.99)
        p99 = f"<{q:g}s" if q is not None else "-"
        lines.append(
            f"  {info.id:<34} {info.kind:<5} {info.in_flight:>9} {info.held:>5} {acked:>4} "
            f"{int(m.get('held_total', 0)):>8} {int(m.get('released_total', 0)):>8} "
            f"{int(m.get('timed_out_total', 0)):>5} {p99:>8} "
            f"{m.get('hold_seconds_max', 0.0):>6.3f}s"
        )
    return "\n".join(lines)


def main() -> None:
    """Console entry point."""
    cli(prog_name="intermission", auto_envvar_prefix=None)


__all__ = ["cli", "main", "p"]
