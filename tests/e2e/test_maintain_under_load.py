"""`roleswap maintain db1 --run <restart with a changed option> --swap-back` under the demo
load: db1 is the primary again, the option changed on db1, 0 failed requests, 0 lost."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.demo.runner import AppServer, start_wsgi
from roleswap.demo.scenario import run_scenario
from roleswap.demo.swaps import SwapRun
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


@pytest.mark.timeout(180)
def test_maintain_primary_with_swap_back_under_load(module_lab: RunningLab, wsgi_app: AppServer) -> None:
    lab = module_lab
    pid_before = lab.lab.node("db1").pid
    runs: list[dict[str, object]] = []

    def maintain(source: str, _target: str) -> SwapRun:
        argv = [sys.executable, "-m", "roleswap", "-c", str(lab.config_path), "maintain", source,
                "--run", restart_cmd(), "--swap-back", "--yes", "--json"]
        t0 = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False)
        data = json.loads(out.stdout) if out.stdout.strip() else {"stderr": out.stderr}
        runs.append(data)
        ok = out.returncode == 0 and bool(data.get("ok"))
        swaps = data.get("swaps") or []
        pause = sum(float(s.get("pause_ms") or 0) for s in swaps)
        return SwapRun(source, source, out.returncode, t0, time.monotonic(), ok=ok, pause_ms=pause,
                       error="" if ok else json.dumps(data)[:2000])

    res = run_scenario(lab.config_path, wsgi_app.url, swaps=1, rate=200.0, swapper=maintain,
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
    from roleswap.lab import Lab

    assert Lab.load(lab.dir).node("db1").pid != pid_before  # it really restarted
