"""The `roleswap` command line.

``roleswap -c FILE --from db1 --to db2`` swaps roles; ``status``, ``recover``
and ``lab`` are subcommands.  Every :class:`RoleSwapError` is printed as the
problem plus its remedy and mapped to its ``exit_code`` (see the README's
exit-code table); tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from roleswap.config import Config, find_config_path, load_config
from roleswap.errors import RoleSwapError, UsageError
from roleswap.render import echo_error

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0  swapped (or the command succeeded)
  2  usage or config error
  3  refused by preflight (nothing changed)
  4  failed and rolled back (nothing changed)
  5  failed after the point of no return (run `roleswap recover`)
  6  failed before the point of no return and the rollback failed too (run `roleswap recover`)
  7  recover cannot decide safely: it changed nothing and printed the manual steps
  8  status --check-health: the cluster is unhealthy (the one-line summary says why)
  9  maintain/rolling stopped outside a swap (the command failed, or the server did
     not come back in time); the message names the steps that did not run"""


class Ctx:
    """What the group parses before any subcommand runs."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(find_config_path(self.config_path))
        return self._config


def report_errors(fn: F) -> F:
    """Turn RoleSwapError into a two-line message and its exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RoleSwapError as e:
            ctx = click.get_current_context(silent=True)
            as_json = bool(ctx and ctx.params.get("as_json"))
            if ctx and ctx.params.get("events"):
                click.echo(json.dumps({"event": "result", "ok": False, "error": e.as_dict()}))
            elif as_json:
                click.echo(json.dumps({"ok": False, "error": e.as_dict()}))
            else:
                echo_error(e)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


# The swap's tuning options: the swap itself, maintain and rolling take them alike.
SWAP_TUNING = [
    click.option("--switch", "switch_method",
                 type=click.Choice(["endpoint", "hook", "vip", "haproxy", "none"]),
                 help="How traffic follows the new primary (default: switch.method in the config)."),
    click.option("--no-pause", is_flag=True, help="Do not pause traffic through intermission."),
    click.option("--max-lag", type=click.FloatRange(min=0), default=5.0, show_default=True,
                 metavar="S", help="Refuse if --to lags more than S seconds."),
    click.option("--drain-timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
                 metavar="S", help="Max wait for in-flight requests after pausing."),
    click.option("--drain-policy", type=click.Choice(["abort", "proceed"]), default="proceed",
                 show_default=True,
                 help="On drain timeout: roll back (abort) or fence anyway (proceed; read_only "
                      "makes the stragglers' writes fail rather than get lost)."),
    click.option("--catchup-timeout", type=click.FloatRange(min=0.1), default=10.0,
                 show_default=True, metavar="S", help="Max wait for --to to reach the fenced position."),
    click.option("--pause-ttl", type=click.FloatRange(min=1), default=30.0, show_default=True,
                 metavar="S", help="Pause lease TTL: traffic resumes by itself if roleswap dies."),
    click.option("--fence-timeout", type=click.IntRange(min=1), default=2, show_default=True,
                 metavar="S", help="lock_wait_timeout for setting read_only (super_read_only on "
                                    "MySQL) on the old primary."),
    click.option("--long-trx", type=click.FloatRange(min=0), default=10.0, show_default=True,
                 metavar="S", help="Refuse if a transaction on --from has run longer than S seconds."),
    click.option("--kill-privileged", is_flag=True,
                 help="Kill sessions on --from that can write through read_only (MariaDB: READ ONLY "
                      "ADMIN) right after the fence, instead of refusing the swap, and wait (at "
                      "most --fence-timeout) until they have ended. On MySQL the "
                      "fence is super_read_only, which stops every session: nothing to kill."),
]


def swap_tuning(fn: F) -> F:
    """Decorate ``fn`` with every option of :data:`SWAP_TUNING`."""
    for opt in reversed(SWAP_TUNING):
        fn = opt(fn)
    return fn


@click.group(invoke_without_command=True, epilog=EXIT_CODES_HELP,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", metavar="FILE", envvar="ROLESWAP_CONFIG",
              help="Config file (TOML). Also $ROLESWAP_CONFIG.")
@click.option("--from", "source", metavar="NAME", help="The current primary to demote.")
@click.option("--to", "target", metavar="NAME",
              help="The replica to promote (default: the best direct replica of --from: threads "
                   "running, no delay or filters, same version, highest priority, least lag).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--check", is_flag=True, help="Run only the preflight checks (never writes).")
@click.option("--dry-run", is_flag=True, help="Run preflight and print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--events", is_flag=True,
              help="Print one JSON object per line as each check and step finishes (NDJSON, for "
                   "CI logs); the last line is the result.")
@swap_tuning
@click.pass_context
@report_errors
def cli(ctx: click.Context, config_path: str | None, source: str | None, target: str | None,
        **opts: Any) -> None:
    """Swap the roles of a MySQL/MariaDB primary and one of its replicas with
    web requests held (not failed) by intermission while the primary changes.

    \b
      roleswap -c FILE --from db1 --to db2     swap roles
      roleswap -c FILE status                  show the topology (and any interrupted swap)
      roleswap -c FILE recover                 finish or roll back an interrupted swap
      roleswap lab up                          start a local lab of real servers
    """
    ctx.obj = Ctx(config_path)
    if ctx.invoked_subcommand is not None:
        if source or target:
            raise UsageError("--from/--to go with a swap, not with a subcommand",
                             remedy="run `roleswap -c FILE --from A --to B` on its own")
        return
    if not source and not target:
        click.echo(ctx.get_help())
        return
    if not source:
        raise UsageError("--to needs --from (the primary to demote)", remedy="e.g. --from db1 --to db2")
    from roleswap.cli_swap import run_swap

    sys.exit(run_swap(ctx.obj.config, source, target, _mode(opts.pop("as_json"), opts.pop("events")),
                      opts))


UNHEALTHY_EXIT = 8  # `status --check-health` (no other outcome uses it)


def _mode(as_json: bool, events: bool) -> str:
    if as_json and events:
        raise UsageError("--json and --events exclude each other",
                         remedy="--json: one object at the end; --events: one line per event")
    return "events" if events else "json" if as_json else "text"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--check-health", is_flag=True,
              help="For monitoring: print one summary line; exit 8 unless exactly one server is "
                   "writable, replication has no cycle and no stopped/broken thread, every server "
                   "can be read and no swap was interrupted.")
@click.pass_obj
@report_errors
def status(obj: Ctx, as_json: bool, check_health: bool) -> None:
    """Show every configured server: role, read_only, replication, lag, GTID position,
    with a DANGER line when not exactly one server is writable or replication loops."""
    from roleswap.status import render_status, status_data

    data = status_data(obj.config)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif check_health:
        click.echo(data["health"]["summary"])
    else:
        for line in render_status(data, obj.config.source).splitlines():
            loud = line.startswith(("DANGER", "INTERRUPTED", "SWAP IN PROGRESS"))
            click.secho(line, fg="red" if loud else None, bold=loud)
    if check_health and not data["health"]["ok"]:
        sys.exit(UNHEALTHY_EXIT)


@cli.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--events", is_flag=True, help="Print one JSON object per line as each step finishes.")
@click.option("--abandon", is_flag=True,
              help="After repairing the cluster by hand: close the interrupted swap's journal, "
                   "end its pause and lock, change no server.")
@click.pass_obj
@report_errors
def recover(obj: Ctx, yes: bool, as_json: bool, events: bool, abandon: bool) -> None:
    """Finish or roll back an interrupted swap, deciding from what the servers say now
    and what the journal says the swap meant to do (idempotent)."""
    from roleswap.cli_swap import run_recover

    sys.exit(run_recover(obj.config, yes=yes, mode=_mode(as_json, events), abandon=abandon))


def runbook_output(fn: F) -> F:
    """--yes, --json and --events, as maintain and rolling take them."""
    for opt in reversed([
        click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end."),
        click.option("--events", is_flag=True, help="Print one JSON object per line as things happen."),
    ]):
        fn = opt(fn)
    return fn


@cli.command()
@click.argument("server")
@click.option("--run", "cmd", required=True, metavar="CMD",
              help="The maintenance command for SERVER (sh -c CMD; see [maintain] in the config).")
@click.option("--swap-back", is_flag=True, help="If SERVER was the primary, make it the primary again.")
@click.option("--to", "target", metavar="NAME",
              help="If SERVER is the primary: the replica to swap to (default: the best one).")
@runbook_output
@swap_tuning
@click.pass_obj
@report_errors
def maintain(obj: Ctx, server: str, cmd: str, swap_back: bool, target: str | None, yes: bool,
             as_json: bool, events: bool, **opts: Any) -> None:
    """Maintenance of one server: swap away if it is the primary, run CMD for it, wait until
    it answers, replicates and has caught up, and with --swap-back make it the primary again."""
    from roleswap.cli_swap import run_runbook

    sys.exit(run_runbook(obj.config, "maintain", server=server, cmd=cmd, swap_back=swap_back,
                         to=target, yes=yes, mode=_mode(as_json, events), cli_opts=opts))


@cli.command()
@click.option("--run", "cmd", required=True, metavar="CMD",
              help="The maintenance command, run for each server in turn (ROLESWAP_SERVER names it).")
@click.option("--to", "target", metavar="NAME",
              help="The replica the primary is swapped to for its turn (default: the best one).")
@runbook_output
@swap_tuning
@click.pass_obj
@report_errors
def rolling(obj: Ctx, cmd: str, target: str | None, yes: bool, as_json: bool, events: bool,
            **opts: Any) -> None:
    """Maintenance of every server: each replica in turn, then the primary (swapped away and
    back), waiting after each until it replicates and has caught up."""
    from roleswap.cli_swap import run_runbook

    sys.exit(run_runbook(obj.config, "rolling", server=None, cmd=cmd, swap_back=True, to=target,
                         yes=yes, mode=_mode(as_json, events), cli_opts=opts))


@cli.group()
def lab() -> None:
    """A local lab of real servers (MariaDB or MySQL + Redis) to rehearse swaps on."""


SERVER_NAMES = ("mariadb-10.11", "mariadb-11.8", "mysql-9.7")  # = roleswap.lab.flavors.FLAVORS


@lab.command("up")
@click.option("--dir", "directory", default=".lab", show_default=True, type=click.Path())
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--server", default=SERVER_NAMES[0], show_default=True, type=click.Choice(SERVER_NAMES),
              help="Server flavor (see `roleswap lab servers`); one that is not the host's own is "
                   "fetched into ~/.cache/roleswap/servers/ on first use.")
@click.option("--no-gtid", is_flag=True, help="Replicate by binlog file/position, not GTID.")
@click.option("--hosts", is_flag=True,
              help="Root only: each server in its own network namespace with sshd, and a VIP "
                   "(config uses switch.method = vip).")
@click.option("--subnet", metavar="CIDR",
              help="With --hosts: the lab's subnet inside 198.18.0.0/15 [default 198.18.71.0/24].")
@click.option("--haproxy", is_flag=True,
              help="Also start a HAProxy in front of every node (admin socket in the lab dir); "
                   "the config uses switch.method = haproxy.")
@click.option("--sentinel", is_flag=True,
              help="Redis as a primary + replica with three sentinels (loopback); the config "
                   "uses the Sentinel form of [redis].")
@report_errors
def lab_up_cmd(directory: str, replicas: int, server: str, no_gtid: bool, hosts: bool,
               subnet: str | None, haproxy: bool, sentinel: bool) -> None:
    """Start db1 (primary), db2.. (replicas) and redis on free 127.0.0.1 ports
    (or, with --hosts, on hosts in network namespaces)."""
    from roleswap.lab import lab_up

    lab_obj = lab_up(Path(directory), replicas=replicas, gtid=not no_gtid, log=click.echo,
                     hosts=hosts, subnet=subnet, server=server, haproxy=haproxy,
                     sentinel=sentinel)
    for n in lab_obj.nodes:
        click.echo(f"  {n.name:<6} {n.kind:<8} {n.host}:{n.port}  pid {n.pid}")
    click.echo(f"config: {lab_obj.config_path}")
    click.echo(f"next:   roleswap -c {lab_obj.config_path} status")


@lab.command("servers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@report_errors
def lab_servers_cmd(as_json: bool) -> None:
    """The server flavors `lab up --server` takes: version, and whether each is ready here
    (ready / installable: fetched on first use / missing: what is lacking)."""
    from roleswap.lab.flavors import server_rows

    rows = server_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']:<14} {r['version']:<28} {r['state']:<12} {r['source']}")
        click.echo(f"{'':<14} {r['detail']}")


@lab.command("fetch")
@click.argument("names", nargs=-1, type=click.Choice(SERVER_NAMES[1:]))
@report_errors
def lab_fetch_cmd(names: tuple[str, ...]) -> None:
    """Fetch server flavors into the cache now (default: every flavor that is not the
    host's own), so a later `lab up --server NAME` does not wait for the download."""
    from roleswap.lab.flavors import get_server

    for name in names or SERVER_NAMES[1:]:
        srv = get_server(name, say=click.echo)
        click.echo(f"{name}: {srv.version} in {srv.root}")


@lab.command("down")
@click.option("--dir", "directory", default=".lab", show_default=True, type=click.Path())
@report_errors
def lab_down_cmd(directory: str) -> None:
    """Kill everything the lab started (by PID) and remove its directory."""
    from roleswap.lab import lab_down

    stopped = lab_down(Path(directory))
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}; removed {directory}")


@lab.command("restart")
@click.argument("name")
@click.option("--dir", "directory", default=".lab", show_default=True, type=click.Path())
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Write this server option into the node's my.cnf before it starts again "
                   "(repeatable), e.g. --set innodb_buffer_pool_size=64M.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="S",
              help="Max wait for the server to answer and, for a replica, to replicate again.")
@report_errors
def lab_restart_cmd(name: str, directory: str, settings: tuple[str, ...], timeout: float) -> None:
    """Stop database node NAME cleanly and start it again (same port, same data), optionally
    with changed server options: a maintenance restart to rehearse on."""
    from roleswap.lab.restart import parse_settings, restart

    click.echo(restart(Path(directory), name, parse_settings(settings), timeout=timeout))


@lab.command("status")
@click.option("--dir", "directory", default=".lab", show_default=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@report_errors
def lab_status_cmd(directory: str, as_json: bool) -> None:
    """Each lab process and whether it answers. Exit 1 if any does not."""
    from roleswap.lab import lab_status

    rows = lab_status(Path(directory))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for r in rows:
            state = "answering" if r["answering"] else ("running" if r["running"] else "DOWN")
            click.echo(f"{r['name']:<6} {r['kind']:<8} {r['address']:<22} pid {r['pid']:<8} {state}")
    if not all(r["answering"] for r in rows):
        sys.exit(1)


def main() -> None:
    try:
        cli(prog_name="roleswap", standalone_mode=True)
    except Exception as e:
        # A bug or an unexpected library error: no traceback (it could carry values from
        # the config) unless asked for; exit 1, which no documented outcome uses.
        if os.environ.get("ROLESWAP_DEBUG"):
            raise
        click.secho(f"internal error: {type(e).__name__}: {mask_text(str(e))}", fg="red", err=True)
        click.echo("  fix: re-run with ROLESWAP_DEBUG=1 for the traceback and report it", err=True)
        sys.exit(1)


def mask_text(text: str) -> str:
    """Hide anything that looks like a URL password."""
    import re

    return re.sub(r"(://[^:/@\s]*:)[^@\s]+@", r"\1***@", text)
