"""``--flavor-rerun`` (scripts/test's runs on the second and third flavor) leaves out only
what cannot differ from the first run: tests that never ask for the flavor, and tests
marked ``flavor_independent``.  Collection only: nothing starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RERUN_SUITES = ("tests/integration", "tests/faults", "tests/e2e", "--ignore=tests/integration/intermission")


def collected(*args: str) -> set[str]:
    res = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
                          "--server", "mysql-9.7", *args, *RERUN_SUITES],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return {line for line in res.stdout.splitlines() if "::" in line}


def test_the_rerun_drops_what_cannot_differ_and_keeps_the_rest() -> None:
    everything, rerun = collected(), collected("--flavor-rerun")
    dropped = everything - rerun
    assert rerun < everything
    # never asks for the flavor: its lab is always the default one
    assert "tests/integration/test_lab.py::test_up_then_down_leaves_nothing" in dropped
    assert "tests/e2e/test_vip_under_load.py::test_wsgi_through_the_vip" in dropped
    # marked: the same swaps as a test that stays
    assert "tests/e2e/test_swap_under_load.py::test_asgi_uvicorn" in dropped
    assert "tests/e2e/test_swap_under_load.py::test_wsgi_gunicorn_four_workers" in rerun
    assert not [n for n in rerun if "test_sentinel.py" in n]  # the whole file is marked
    # the fault matrix keeps every kind that recovers from the servers' word
    kinds = {n.split("[")[1].rsplit("-", 1)[0] for n in rerun if "test_faults.py::test_fault[" in n}
    assert kinds == {"from-kill", "to-kill", "redis-kill", "redis-restart", "roleswap-kill"}
    assert all("redis-stop" in n for n in dropped if "test_fault[" in n)
    # everything that uses the flavor's servers and is not marked stays
    assert "tests/integration/test_failures.py::test_sigkill_then_recover[promote:after]" in rerun
    assert "tests/integration/test_lab_flavors.py::test_real_swap[mysql-9.7-there]" in rerun
