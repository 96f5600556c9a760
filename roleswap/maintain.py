"""Maintenance runbooks: `roleswap maintain SERVER --run CMD` and `roleswap rolling --run CMD`.

maintain:  [swap-away]  if SERVER is the primary: a normal swap to ``to`` (or the best
                        replica), with the same preflight, pause and safety as any swap;
           run          CMD for SERVER (``[maintain] run``: ``local`` = ``sh -c CMD`` here
                        with ROLESWAP_SERVER/_HOST/_PORT/_CONFIG set, ``ssh`` = on the server
                        over the vip method's SSH settings); a non-zero exit stops here;
           wait         until SERVER answers, both replication threads run and it holds
                        everything the primary has logged (bounded by ``wait_timeout``;
                        progress as events);
           [swap-back]  with ``swap_back``: the primary back to SERVER.
rolling:   maintain on every replica, one at a time, then on the primary (swap away,
           run, wait, swap back).

The plan is recorded before the first step and after each one (:mod:`roleswap.coord.
runbook`), so after a crash `roleswap recover` finishes an interrupted swap and then
names the runbook steps that are left.  The command is run, never stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from roleswap.coord import client as redis_client
from roleswap.coord.runbook import RunbookRecord
from roleswap.errors import PreflightError, RoleSwapError, RunbookError, UsageError
from roleswap.events import OnEvent, RunbookProgress, RunbookStepDone
from roleswap.swap.runner import StepResult, SwapResult
from roleswap.swap.target import choose_target

if TYPE_CHECKING:
    from roleswap.api import Cluster
    from roleswap.config import Config
    from roleswap.mysql.topology import Topology

PlanStep = dict[str, str]  # {"step", "server", "what"}
SWAP_STEPS = ("swap-away", "swap-back")


@dataclass
class RunbookResult:
    kind: str  # maintain | rolling
    runbook_id: str
    plan: list[PlanStep]
    steps: list[StepResult] = field(default_factory=list)
    swaps: list[SwapResult] = field(default_factory=list)
    error: RoleSwapError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "kind": self.kind, "runbook_id": self.runbook_id,
                               "plan": self.plan, "steps": [s.as_dict() for s in self.steps],
                               "swaps": [s.as_dict() for s in self.swaps]}
        if self.error is not None:
            out["error"] = self.error.as_dict()
        return out


# -- planning (reads only) ------------------------------------------------------------
def plan_maintain(cluster: Cluster, server: str, *, swap_back: bool = False,
                  to: str | None = None) -> list[PlanStep]:
    return _plan_one(cluster.config, cluster.status(), server, swap_back, to)


def plan_rolling(cluster: Cluster, *, to: str | None = None) -> list[PlanStep]:
    """Every replica, then the primary: planned from ONE read of the servers."""
    topo = cluster.status()
    primary = _the_primary(topo.writable())
    steps: list[PlanStep] = []
    for name in cluster.config.servers:
        if name != primary:
            steps += _plan_one(cluster.config, topo, name, False, None)
    return steps + _plan_one(cluster.config, topo, primary, True, to)


def _plan_one(cfg: Config, topo: Topology, server: str, swap_back: bool,
              to: str | None) -> list[PlanStep]:
    if server not in cfg.servers:
        raise UsageError(f"{server!r} is not a configured server",
                         remedy=f"use one of: {', '.join(cfg.servers)}")
    primary = _the_primary(topo.writable())
    steps: list[PlanStep] = []
    if server == primary:
        target = to or choose_target(cfg, topo, server).target
        steps.append({"step": "swap-away", "server": server, "to": target,
                      "what": f"swap the primary {server} -> {target}"})
    elif to is not None:
        raise UsageError(f"--to only applies when {server} is the primary ({primary} is)",
                         remedy="drop --to: a replica is maintained in place")
    steps += [{"step": "run", "server": server, "what": f"run the command for {server}"},
              {"step": "wait", "server": server,
               "what": f"wait until {server} answers, replicates and has caught up"}]
    if swap_back and steps[0]["step"] == "swap-away":
        steps.append({"step": "swap-back", "server": steps[0]["to"], "to": server,
                      "what": f"swap the primary back {steps[0]['to']} -> {server}"})
    return steps


def _the_primary(writable: list[Any]) -> str:
    if len(writable) != 1:
        names = [s.name for s in writable]
        raise PreflightError(f"a runbook needs exactly one writable server; found {names or 'none'}",
                             remedy="see `roleswap status`; `roleswap recover` first")
    return str(writable[0].name)


# -- running ----------------------------------------------------------------------------
def execute(cluster: Cluster, kind: str, plan: list[PlanStep], cmd: str, emit: OnEvent,
            swap_options: dict[str, Any]) -> RunbookResult:
    """Run ``plan``; raises the first failure (with ``error.result`` the RunbookResult)."""
    client = redis_client.connect(cluster.config)
    rb = RunbookRecord(client, cluster.config.cluster)
    res = RunbookResult(kind, "", plan)
    try:
        try:
            res.runbook_id = rb.begin(kind, plan, hashlib.sha256(cmd.encode()).hexdigest())
        except redis.RedisError as e:
            raise RunbookError(f"cannot record the runbook in Redis ({type(e).__name__}); nothing was run",
                               remedy=f"check {redis_client.config_key(cluster.config)} in "
                                      f"{cluster.config.source}") from None
        for i, step in enumerate(plan):
            t0 = time.perf_counter()
            name = f"{step['step']} {step['server']}"
            try:
                detail = _one(cluster, step, cmd, emit, swap_options, res)
            except RoleSwapError as e:
                r = StepResult(name, "failed", (time.perf_counter() - t0) * 1000, e.message)
                res.steps.append(r)
                emit(RunbookStepDone(r))
                rb.finish("failed", e.message)
                res.error = _stopped(e, plan[i:], step)
                res.error.result = res
                raise res.error from None
            r = StepResult(name, "done", (time.perf_counter() - t0) * 1000, detail)
            res.steps.append(r)
            emit(RunbookStepDone(r))
            rb.step_done(i)
        rb.finish("done")
        return res
    except RoleSwapError:
        raise
    except BaseException as e:  # Ctrl-C, a bug: the record says where it stopped
        if rb.record:
            with contextlib.suppress(redis.RedisError):
                rb.finish("failed", f"{type(e).__name__} during the runbook")
        raise
    finally:
        if client is not None:
            client.close()


def _one(cluster: Cluster, step: PlanStep, cmd: str, emit: OnEvent, swap_options: dict[str, Any],
         res: RunbookResult) -> str:
    kind, server = step["step"], step["server"]
    if kind in SWAP_STEPS:
        sw = cluster.swap(server, step["to"], on_event=emit, **swap_options)
        res.swaps.append(sw)
        return f"{step['to']} is the primary (pause {sw.pause_ms or 0:.1f} ms)"
    if kind == "run":
        return run_command(cluster, server, cmd)
    return wait_ready(cluster, server, cluster.config.maintain.wait_timeout,
                      lambda state: emit(RunbookProgress(server, state)))


def _stopped(e: RoleSwapError, left: list[PlanStep], step: PlanStep) -> RoleSwapError:
    """The error to raise: a swap's own (its exit code says what happened), else exit 9;
    either way naming the runbook steps that did not run."""
    todo = "; ".join(f"{s['what']}" for s in left[1:]) or "nothing"
    if step["step"] in SWAP_STEPS:
        e.remedy = f"{e.remedy} — runbook steps not run: {todo}".strip(" —")
        return e
    return RunbookError(f"the runbook stopped at `{step['step']}` for {step['server']}: {e.message}",
                        remedy=f"{e.remedy + '; ' if e.remedy else ''}then do the rest by hand: {todo}")


def run_command(cluster: Cluster, server: str, cmd: str) -> str:
    """Run ``cmd`` for ``server`` where ``[maintain] run`` says; its last output line."""
    cfg = cluster.config
    srv = cfg.server(server)
    timeout = cfg.maintain.timeout
    if cfg.maintain.run == "ssh":
        from roleswap.remote import RemoteShell, ssh_target

        # the same variables as locally, every value quoted; CMD itself runs under sh -c
        assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in (
            ("ROLESWAP_SERVER", server), ("ROLESWAP_HOST", srv.host), ("ROLESWAP_PORT", str(srv.port))))
        shell = RemoteShell(ssh_target(cfg, server))
        try:
            out = shell.run(f"{assign} sh -c {shlex.quote(cmd)}", timeout=timeout)
        finally:
            shell.close()
        rc, text = out.rc, out.out
    else:
        env = {**os.environ, "ROLESWAP_SERVER": server, "ROLESWAP_HOST": srv.host,
               "ROLESWAP_PORT": str(srv.port), "ROLESWAP_CONFIG": cfg.source}
        if cfg.lab is not None and cfg.lab.dir:
            env["ROLESWAP_LAB_DIR"] = cfg.lab.dir
        try:
            p = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True,
                               timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RunbookError(f"the command for {server} ran longer than {timeout:g}s and was stopped",
                               remedy="raise [maintain] timeout, or check the command") from None
        rc, text = p.returncode, (p.stdout + p.stderr)
    last = (text.strip().splitlines() or [""])[-1][:300]
    if rc != 0:
        raise RunbookError(f"the command for {server} exited {rc}: {last}",
                           remedy=f"fix what it reports; {server} is not the primary")
    return last or "exit 0"


def wait_ready(cluster: Cluster, server: str, timeout: float, progress: Callable[[str], None]) -> str:
    """Until ``server`` answers, replicates with both threads and holds every transaction
    the primary has logged; raises RunbookError after ``timeout`` naming the last state."""
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    said = ""
    while True:
        state = _ready_state(cluster, server)
        if state == "":
            return f"{server} replicates and has caught up after {time.monotonic() - t0:.1f}s"
        if state != said:
            progress(state)
            said = state
        if time.monotonic() > deadline:
            raise RunbookError(f"{server} is not ready after {timeout:g}s: {state}",
                               remedy=f"see `roleswap status`; raise [maintain] wait_timeout if {server} "
                                      "needs longer to catch up")
        time.sleep(0.2)


def _ready_state(cluster: Cluster, server: str) -> str:
    """'' when ready, else what is missing (the wording the progress events show)."""
    topo = cluster.status()
    s = topo.by_name(server)
    if not s.ok:
        return f"not answering ({s.error_kind or 'error'})"
    writable = topo.writable()
    if len(writable) != 1:
        return f"{len(writable)} writable servers"
    p = writable[0]
    if s.replica is None or not s.replica.running:
        return "replication threads not running"
    if topo.source_of(server) != p.name:
        return f"replicates from {topo.source_of(server) or 'an unknown server'}, not {p.name}"
    if s.gtid_position is not None and p.gtid_position is not None:
        if not p.gtid_position <= s.gtid_position:  # type: ignore[operator]
            return "catching up"
        return ""
    r = s.replica
    if r.seconds_behind != 0 or (r.source_log_file, r.read_source_log_pos) != (
            r.relay_source_log_file, r.exec_source_log_pos):
        return "catching up"
    return ""
