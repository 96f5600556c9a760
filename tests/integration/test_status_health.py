"""`roleswap status` dangers and `status --check-health`, each state created for real;
and the lab's startup safety: a restarted server never comes back writable."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.cli import EXIT_CODES_HELP, UNHEALTHY_EXIT
from roleswap.lab import lab_down, lab_up, procs
from roleswap.lab.lab import Lab
from roleswap.status import replication_cycles, sql_hints
from tests.conftest import RunningLab, needs_root
from tests.integration.swaphelp import roleswap, wait_healthy


@pytest.fixture
def lab(module_lab: RunningLab) -> Iterator[RunningLab]:
    """The module's own lab, healthy around db1 before and after each test."""
    wait_healthy(module_lab, "db1")
    yield module_lab
    wait_healthy(module_lab, "db1")


def health(lab: RunningLab | str) -> tuple[int, str]:
    res = roleswap(lab, "status", "--check-health")
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout  # one line, for monitoring
    return res.returncode, lines[0]


def status_text(lab: RunningLab | str) -> str:
    res = roleswap(lab, "status")
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


# -- pure ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sources,cycles", [
    ({"db2": "db1", "db3": "db1"}, []),
    ({"db1": "db2", "db2": "db1", "db3": "db1"}, [["db1", "db2"]]),
    ({"db1": "db3", "db2": "db1", "db3": "db2"}, [["db1", "db3", "db2"]]),
    ({"db2": "db2"}, [["db2"]]),
    ({"db1": None, "db2": "db1", "db3": "db4", "db4": "db3"}, [["db3", "db4"]]),
])
def test_replication_cycles(sources: dict[str, str | None], cycles: list[list[str]]) -> None:
    assert replication_cycles(sources) == cycles


def test_unhealthy_exit_code_is_documented_and_unique() -> None:
    assert UNHEALTHY_EXIT == 8
    assert "8  status --check-health" in EXIT_CODES_HELP
    used = [line.split()[0] for line in EXIT_CODES_HELP.splitlines()[2:]]
    assert used.count("8") == 1, EXIT_CODES_HELP
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "`8` unhealthy (`status --check-health`)" in readme


# -- real states ---------------------------------------------------------------------------
def test_healthy_cluster(lab: RunningLab) -> None:
    code, line = health(lab)
    assert code == 0 and line == "OK: cluster lab: db1 writable, 2 replica(s) running", line
    assert "DANGER" not in status_text(lab)
    data = json.loads(roleswap(lab, "status", "--json").stdout)
    assert data["health"]["ok"] is True and data["danger"] == []


def test_two_writable_servers(lab: RunningLab) -> None:
    lab.set_read_only("db2", False)
    try:
        text = status_text(lab)
        assert "DANGER: 2 writable servers: db1, db2" in text, text
        assert f"{sql_hints(lab.dialect('db1'))['fence']} on the others" in text
        code, line = health(lab)
        assert code == UNHEALTHY_EXIT and "2 writable servers (db1, db2)" in line, line
        data = json.loads(roleswap(lab, "status", "--json").stdout)
        assert data["health"]["ok"] is False and data["danger"][0].startswith("DANGER: 2 writable")
    finally:
        lab.set_read_only("db2", True)


def test_no_writable_server(lab: RunningLab) -> None:
    lab.set_read_only("db1", True)
    try:
        text = status_text(lab)
        assert "DANGER: no writable server;" in text, text
        assert f"{sql_hints(lab.dialect('db1'))['unfence']} on the server" in text
        code, line = health(lab)
        assert code == UNHEALTHY_EXIT and "0 writable servers" in line, line
    finally:
        lab.set_read_only("db1", False)


def test_replication_cycle(lab: RunningLab) -> None:
    lab.replicate_from("db1", "db2")
    try:
        text = status_text(lab)
        assert "DANGER: replication cycle: db1 replicates from db2, db2 replicates from db1" in text, text
        assert sql_hints(lab.dialect("db1"))["reset"] in text
        code, line = health(lab)
        assert code == UNHEALTHY_EXIT and "replication cycle db1 -> db2 -> db1" in line, line
    finally:
        lab.forget_source("db1")


def test_stopped_replica_thread(lab: RunningLab) -> None:
    lab.stop_replica("db3", "SQL_THREAD")
    try:
        code, line = health(lab)
        assert code == UNHEALTHY_EXIT and "db3 replication stopped (IO Yes, SQL No)" in line, line
    finally:
        lab.start_replica("db3", "SQL_THREAD")


def test_broken_replica(lab: RunningLab) -> None:
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.rs_health (id INT PRIMARY KEY)")
    assert lab.wait_gtid("db3", lab.gtid_position("db1"), 10)
    try:
        # a row db1 never had, then the same key from db1: duplicate key on db3
        lab.write_through_fence("db3", "SET SESSION sql_log_bin=0",
                                "INSERT INTO app.rs_health VALUES (1)")
        lab.query("db1", "INSERT INTO app.rs_health VALUES (1)")
        code, line = health(lab)
        for _ in range(100):
            if "replication broken" in line:
                break
            code, line = health(lab)
        assert code == UNHEALTHY_EXIT and "db3 replication broken (SQL error 1062" in line, line
    finally:
        lab.write_through_fence("db3", "SET SESSION sql_log_bin=0", "DELETE FROM app.rs_health")
        lab.start_replica("db3")
        wait_healthy(lab, "db1")
        lab.query("db1", "DROP TABLE app.rs_health")


def test_unreachable_server(lab: RunningLab, tmp_path: Path) -> None:
    port = procs.free_port()
    cfg = tmp_path / "ghost.toml"
    cfg.write_text(lab.config_path.read_text() + f'\n[servers.ghost]\nhost = "127.0.0.1"\nport = {port}\n')
    os.chmod(cfg, 0o600)
    code, line = health(str(cfg))
    assert code == UNHEALTHY_EXIT and line.startswith("UNHEALTHY: cluster lab: ghost unreachable"), line


# -- startup safety ------------------------------------------------------------------------
def test_every_lab_node_config_says_read_only(lab: RunningLab) -> None:
    dbs = [node for node in lab.lab.nodes if node.is_db]
    assert len(dbs) == 3
    for node in dbs:
        lines = (Path(node.dir) / "my.cnf").read_text().splitlines()
        assert "read_only=1" in lines, node.name
        if node.kind == "mysql":  # read_only alone lets SUPER / CONNECTION_ADMIN accounts write
            assert "super_read_only=1" in lines, node.name
    assert lab.query("db1", "SELECT @@read_only")[0][0] == 0


def _crash_and_restart(lab_dir: Path, name: str) -> None:
    """SIGKILL the node's server and start it again from its own my.cnf."""
    from roleswap.lab.nodes import kill_node, start_node_again

    kill_node(lab_dir, name, signal.SIGKILL)
    start_node_again(lab_dir, name)


def test_restarted_primary_comes_back_read_only(lab: RunningLab) -> None:
    _crash_and_restart(lab.dir, "db1")
    assert Lab.load(lab.dir).node("db1").alive()
    try:
        assert lab.query("db1", "SELECT @@read_only")[0][0] == 1
        text = status_text(lab)
        assert "DANGER: no writable server;" in text, text
        code, _line = health(lab)
        assert code == UNHEALTHY_EXIT
    finally:
        lab.set_read_only("db1", False)  # what an operator does, deliberately


@needs_root
def test_hosts_lab_primary_restarts_read_only(tmp_path_factory: pytest.TempPathFactory) -> None:
    from roleswap.demo.hostslab import pick_subnet

    d = tmp_path_factory.mktemp("hostslab") / "lab"
    subnet = pick_subnet(d, tuple(f"198.18.{i}.0/24" for i in range(230, 250)))
    started = lab_up(d, replicas=1, hosts=True, subnet=subnet)
    try:
        for node in started.nodes:
            if node.is_db:
                assert "read_only=1" in (Path(node.dir) / "my.cnf").read_text().splitlines()
        cfg = str(started.config_path)
        code, line = health(cfg)
        assert code == 0, line
        _crash_and_restart(d, "db1")
        code, line = health(cfg)
        assert code == UNHEALTHY_EXIT and "0 writable servers" in line, line
    finally:
        lab_down(d)
