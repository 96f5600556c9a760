"""maintain / rolling on a real lab: every server restarted in turn with a changed option,
a failing command (exit 9, the steps left named), a runbook killed mid-way and closed by
recover (which names what it did not run), and the plan refused when it cannot run."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.lab import Lab
from tests.conftest import RunningLab, start_lab
from tests.integration.swaphelp import primary_of, roleswap, snapshot, wait_healthy

ROLESWAP = str(Path(sys.executable).with_name("roleswap"))


def restart_cmd(setting: str = "max_connections=77") -> str:
    return (f'{shlex.quote(ROLESWAP)} lab restart "$ROLESWAP_SERVER" --dir "$ROLESWAP_LAB_DIR" '
            f"--set {setting}")


@pytest.fixture(scope="module")
def big_lab(tmp_path_factory: pytest.TempPathFactory, server_flavor: str) -> Iterator[RunningLab]:
    """db1 + 3 replicas (rolling walks all four)."""
    d = tmp_path_factory.mktemp("rolling") / "lab"
    lab = start_lab(d, server_flavor, replicas=3)
    try:
        yield RunningLab(lab)
    finally:
        from roleswap.lab import lab_down

        lab_down(d)


def test_rolling_restarts_every_server_primary_last(big_lab: RunningLab) -> None:
    lab = big_lab
    pids = {n.name: n.pid for n in Lab.load(lab.dir).nodes if n.is_db}
    res = roleswap(lab, "rolling", "--run", restart_cmd(), "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    names = [s["name"] for s in data["steps"]]
    assert names[:6] == ["run db2", "wait db2", "run db3", "wait db3", "run db4", "wait db4"]
    assert names[6] == "swap-away db1" and names[-1].startswith("swap-back") and names[7:9] == [
        "run db1", "wait db1"]
    after = {n.name: n.pid for n in Lab.load(lab.dir).nodes if n.is_db}
    assert all(after[n] != pids[n] for n in pids), (pids, after)
    for n in pids:
        assert lab.query(n, "SELECT @@max_connections")[0][0] == 77, n
    wait_healthy(lab, "db1")
    assert primary_of(snapshot(lab)) == ["db1"]


def test_failing_command_stops_with_exit_9_and_names_the_rest(big_lab: RunningLab) -> None:
    lab = big_lab
    res = roleswap(lab, "maintain", "db1", "--run", "echo disk full >&2; exit 3", "--swap-back",
                   "--yes", "--json")
    try:
        assert res.returncode == 9, res.stdout + res.stderr
        data = json.loads(res.stdout)
        assert data["ok"] is False and data["error"]["type"] == "RunbookError"
        assert "exited 3: disk full" in data["error"]["message"]
        assert "swap the primary back db2 -> db1" in data["error"]["remedy"]
        assert [s["status"] for s in data["steps"]] == ["done", "failed"]
        wait_healthy(lab, "db2")  # the swap-away completed; the cluster is whole around db2
    finally:
        assert roleswap(lab, "--from", "db2", "--to", "db1", "--yes").returncode == 0
        wait_healthy(lab, "db1")


def test_runbook_killed_mid_way_is_closed_by_recover(big_lab: RunningLab) -> None:
    lab = big_lab
    marker = lab.dir / "runbook-started"
    cmd = f"touch {shlex.quote(str(marker))}; sleep 60"
    proc = subprocess.Popen([ROLESWAP, "-c", str(lab.config_path), "maintain", "db1", "--run", cmd,
                             "--swap-back", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(proc.stdout.read() if proc.stdout else "maintain never ran its command")
            time.sleep(0.05)
    finally:
        import os

        os.killpg(proc.pid, signal.SIGKILL)  # roleswap and its command, mid-`run`
        proc.wait(10)
    status = roleswap(lab, "status")
    assert "INTERRUPTED RUNBOOK maintain" in status.stdout, status.stdout
    assert "wait until db1 answers" in status.stdout
    health = roleswap(lab, "status", "--check-health")
    assert health.returncode == 8 and "interrupted maintain runbook" in health.stdout, health.stdout
    rec = roleswap(lab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    out = rec.stdout
    assert "was interrupted; closed it" in out
    assert "wait until db1 answers" in out and "swap the primary back db2 -> db1" in out
    left = out.split("did not run:")[1].split("Re-run")[0]
    assert "run the command for db1" in left  # it was killed inside `run`: not done
    assert "swap the primary db1 -> db2" not in left  # the swap-away was done
    again = roleswap(lab, "recover", "--yes")
    assert again.returncode == 0 and "runbook" not in again.stdout, again.stdout
    wait_healthy(lab, "db2")
    assert roleswap(lab, "--from", "db2", "--to", "db1", "--yes").returncode == 0
    wait_healthy(lab, "db1")


def test_refusals_change_nothing(big_lab: RunningLab) -> None:
    lab = big_lab
    before = snapshot(lab)
    r = roleswap(lab, "maintain", "db9", "--run", "true", "--yes")
    assert r.returncode == 2 and "'db9' is not a configured server" in r.stderr
    r = roleswap(lab, "maintain", "db2", "--run", "true", "--to", "db3", "--yes")
    assert r.returncode == 2 and "--to only applies when db2 is the primary" in r.stderr
    r = roleswap(lab, "maintain", "db2", "--run", "  ", "--yes")
    assert r.returncode == 2 and "needs a command" in r.stderr
    assert snapshot(lab) == before
