"""`roleswap maintain db1 --run <restart with a changed option> --swap-back` under the demo
load: db1 is the primary again, the option changed on db1, 0 failed requests, 0 lost."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from roleswap.demo.runner import AppServer, start_wsgi
from roleswap.demo.scenario import run_scenario
from roleswap.demo.swaps import SwapRun
from roleswap.lab import Lab
from tests.conftest import RunningLab

pytestmark = [pytest.mark.slow]

BUFFER_POOL = 64 * 1024 * 1024


@pytest.fixture
def wsgi_app(module_lab: RunningLab, tmp_path: Path) -> Iterator[AppServer]:
    server = start_wsgi(module_lab.config_path, tmp_path, workers=4, threads=8)
    yield server
    server.stop()


def restart_cmd() -> str:
    roleswap = shlex.quote(str(Path(sys.executable).with_name("roleswap")))
    return (f'{roleswap} lab restart "$ROLESWAP_SERVER" --dir "$ROLESWAP_LAB_DIR" '
            f"--set innodb_buffer_pool_size={BUFFER_POOL}")


def runbook(lab: RunningLab, runs: list[dict[str, Any]], *args: str,
            env: dict[str, str] | None = None) -> Callable[[str, str], SwapRun]:
    """A run_scenario swapper running ``roleswap ARGS --run <restart> --yes --json`` once
    (with ``env`` added to its environment)."""

    def run(source: str, _target: str) -> SwapRun:
        argv = [sys.executable, "-m", "roleswap", "-c", str(lab.config_path), *args,
                "--run", restart_cmd(), "--yes", "--json"]
        t0 = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False,
                             env={**os.environ, **(env or {})})
        data = json.loads(out.stdout) if out.stdout.strip() else {"stderr": out.stderr}
        runs.append(data)
        ok = out.returncode == 0 and bool(data.get("ok"))
        swaps = data.get("swaps") or []
        pause = sum(float(s.get("pause_ms") or 0) for s in swaps)
        return SwapRun(source, source, out.returncode, t0, time.monotonic(), ok=ok, pause_ms=pause,
                       error="" if ok else json.dumps(data)[:2000])

    return run


@pytest.mark.timeout(180)
def test_maintain_primary_with_swap_back_under_load(module_lab: RunningLab, wsgi_app: AppServer) -> None:
    lab = module_lab
    pid_before = Lab.load(lab.dir).node("db1").pid
    runs: list[dict[str, Any]] = []
    # each swap sits 0.1 s inside its pause window: ~20 requests arrive there at 200 req/s,
    # so "both swaps held requests" is certain (a ~10 ms window caught none in two swaps once)
    hold = {"ROLESWAP_SLEEP_AT": "pause:after=0.1"}
    res = run_scenario(lab.config_path, wsgi_app.url, swaps=1, rate=200.0,
                       swapper=runbook(lab, runs, "maintain", "db1", "--swap-back", env=hold),
                       warmup=1.0, settle=1.0)
    problems = res.problems()
    assert not problems, f"{problems}\n{json.dumps(runs, default=str)[:3000]}\n{wsgi_app.log_tail()}"
    data = runs[0]
    assert [s["name"] for s in data["steps"]] == ["swap-away db1", "run db1", "wait db1", "swap-back db2"]
    assert [(s["from"], s["to"]) for s in data["swaps"]] == [("db1", "db2"), ("db2", "db1")]
    assert res.consistency.primary == "db1" and res.consistency.lost_total == 0
    assert res.load.failed == 0 and res.consistency.acked > 0
    assert res.load.held > 0  # both swaps held requests rather than failing them
    assert lab.query("db1", "SELECT @@innodb_buffer_pool_size")[0][0] == BUFFER_POOL


    assert Lab.load(lab.dir).node("db1").pid != pid_before  # it really restarted


@pytest.mark.timeout(240)
def test_rolling_under_load(module_lab: RunningLab, wsgi_app: AppServer) -> None:
    lab = module_lab
    pids = {n.name: n.pid for n in Lab.load(lab.dir).nodes if n.is_db}
    runs: list[dict[str, Any]] = []
    res = run_scenario(lab.config_path, wsgi_app.url, swaps=1, rate=200.0,
                       swapper=runbook(lab, runs, "rolling"), warmup=1.0, settle=1.0)
    problems = res.problems()
    assert not problems, f"{problems}\n{json.dumps(runs, default=str)[:3000]}\n{wsgi_app.log_tail()}"
    steps = [s["name"] for s in runs[0]["steps"]]
    assert steps[:4] == ["run db2", "wait db2", "run db3", "wait db3"] and steps[4] == "swap-away db1"
    assert res.consistency.primary == "db1" and res.consistency.lost_total == 0 and res.load.failed == 0


    after = {n.name: n.pid for n in Lab.load(lab.dir).nodes if n.is_db}
    assert all(after[n] != pids[n] for n in pids)
