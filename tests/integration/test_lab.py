"""The lab: real MariaDB + Redis started, replicating, and torn down by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

from roleswap.errors import MissingBinaryError
from roleswap.lab import lab_down, lab_status, lab_up, procs
from roleswap.mysql.gtid import GtidValue, extra_gtids
from tests.conftest import RunningLab


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and procs.alive(int(entry.name), text):
            pids.append(int(entry.name))
    return pids


def test_replication_works_on_every_replica(lab: RunningLab) -> None:
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.t_lab (id INT PRIMARY KEY, v VARCHAR(20))")
    lab.query("db1", "REPLACE INTO app.t_lab VALUES (1, %s)", ("hello",))
    pos = lab.gtid_position("db1")
    for name in ("db2", "db3"):
        assert lab.wait_gtid(name, pos, 10)
        assert lab.query(name, "SELECT v FROM app.t_lab WHERE id=1") == [("hello",)]
        assert lab.gtid_applied(name) == pos
        assert lab.query(name, "SELECT @@read_only")[0][0] == 1
    assert lab.query("db1", "SELECT @@read_only")[0][0] == 0
    lab.query("db1", "DROP TABLE app.t_lab")


def test_accounts_have_the_right_powers(lab: RunningLab) -> None:
    cfg = lab.config
    assert cfg.lab is not None
    db2 = cfg.server("db2")
    app = pymysql.connect(host=db2.host, port=db2.port, user=cfg.lab.app_user,
                          password=cfg.lab.app_password.reveal(), database="app",
                          autocommit=True, ssl_disabled=True)
    try:
        with app.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("CREATE TABLE app.must_fail (id INT)")
        assert err.value.args[0] == 1290  # read_only applies to the application account
    finally:
        app.close()
    ctl = pymysql.connect(host=db2.host, port=db2.port, user=cfg.mysql.user,
                          password=cfg.mysql.password.reveal(), autocommit=True, ssl_disabled=True)
    try:
        d = lab.dialect("db2")
        with ctl.cursor() as cur:
            for sql, params in d.read_only():  # the control account may fence/unfence
                cur.execute(sql, params or None)
            cur.execute(*d.replica_status())
            assert cur.fetchone() is not None
    finally:
        ctl.close()
    # replicas carry no GTIDs of their own (accounts were created with sql_log_bin=0)
    primary = gtid_state(lab, "db1")
    for name in ("db2", "db3"):
        assert not extra_gtids(gtid_state(lab, name), primary), name


def gtid_state(lab: RunningLab, name: str) -> GtidValue:
    d = lab.dialect(name)
    return d.parse_gtid_state(str(lab.run(name, [d.gtid_state()])[0]["g"] or ""))


def test_config_file_is_private_and_complete(lab: RunningLab) -> None:
    assert (lab.config_path.stat().st_mode & 0o777) == 0o600
    cfg = lab.config
    assert sorted(cfg.servers) == ["db1", "db2", "db3"]
    assert cfg.redis_url is not None and cfg.redis_url.reveal().startswith("redis://127.0.0.1:")
    assert cfg.scope == "lab" and cfg.switch_method == "endpoint"
    assert cfg.lab is not None and cfg.lab.database == "app"


def test_lab_status_reports_every_process(lab: RunningLab) -> None:
    rows = lab_status(lab.dir)
    assert {r["name"] for r in rows} == {"db1", "db2", "db3", "redis"}
    assert all(r["running"] and r["answering"] for r in rows)


def test_up_then_down_leaves_nothing(tmp_path: Path) -> None:
    d = tmp_path / "lab"
    started = lab_up(d, replicas=1)
    pids = [n.pid for n in started.nodes]
    assert len(pids) == 3 and all(procs.alive(p) for p in pids)
    stopped = lab_down(d)
    assert sorted(stopped) == ["db1", "db2", "redis"]
    assert not d.exists()
    assert not [p for p in pids if procs.alive(p)]
    assert processes_mentioning(str(d)) == []


def test_port_taken_meanwhile_still_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first port handed out is grabbed by someone else before mariadbd binds it."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_port = procs.free_port
    calls = {"n": 0}

    def racy_free_port(host: str = "127.0.0.1", avoid: set[int] | None = None) -> int:
        calls["n"] += 1
        return taken if calls["n"] == 1 else real_free_port(host, avoid)

    monkeypatch.setattr(procs, "free_port", racy_free_port)
    d = tmp_path / "lab"
    try:
        started = lab_up(d, replicas=1)
        ports = {n.port for n in started.nodes}
        assert taken not in ports
        assert all(r["answering"] for r in lab_status(d))
    finally:
        lab_down(d)
        squatter.close()
    assert processes_mentioning(str(d)) == []


def test_missing_binary_is_named_and_nothing_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    redis = procs.which("redis-server")
    assert redis
    (bindir / "redis-server").symlink_to(redis)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(procs, "_EXTRA_PATHS", ())
    d = tmp_path / "lab"
    with pytest.raises(MissingBinaryError) as err:
        lab_up(d)
    assert "mariadbd" in err.value.message
    assert "apt-get install -y mariadb-server" in err.value.remedy
    assert not d.exists()
    assert processes_mentioning(str(d)) == []


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roleswap", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_cli_lab_cycle_and_status(tmp_path: Path) -> None:
    d = tmp_path / "clilab"
    up = run_cli("lab", "up", "--dir", str(d))
    try:
        assert up.returncode == 0, up.stderr
        cfg = str(d / "roleswap.toml")
        st = run_cli("-c", cfg, "status")
        assert st.returncode == 0, st.stderr
        lines = st.stdout.splitlines()
        assert any(line.split()[0] == "db1" and "primary" in line for line in lines), st.stdout
        for name in ("db2", "db3"):
            assert any(line.split()[0] == name and "replica" in line for line in lines), st.stdout
        js = json.loads(run_cli("-c", cfg, "status", "--json").stdout)
        roles = {s["name"]: s["role"] for s in js["servers"]}
        assert roles == {"db1": "primary", "db2": "replica", "db3": "replica"}
        password = (d / "roleswap.toml").read_text().split('password = "')[1].split('"')[0]
        assert password not in st.stdout + st.stderr
        ls = run_cli("lab", "status", "--dir", str(d))
        assert ls.returncode == 0 and ls.stdout.count("answering") == 4
    finally:
        down = run_cli("lab", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
    assert not d.exists()


def test_down_after_the_starting_process_crashed(tmp_path: Path) -> None:
    d = tmp_path / "crashlab"
    proc = subprocess.Popen([sys.executable, "-m", "roleswap", "lab", "up", "--dir", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if len(json.loads((d / "lab.json").read_text())["nodes"]) >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert processes_mentioning(str(d)), "expected servers left behind by the crash"
    finally:
        if proc.poll() is None:
            proc.kill()
    lab_down(d)
    assert processes_mentioning(str(d)) == []
    assert not d.exists()


def test_unreachable_server_in_status(lab: RunningLab, tmp_path: Path) -> None:
    port = procs.free_port()
    text = lab.config_path.read_text() + f'\n[servers.ghost]\nhost = "127.0.0.1"\nport = {port}\n'
    cfg = tmp_path / "ghost.toml"
    cfg.write_text(text)
    os.chmod(cfg, 0o600)
    st = run_cli("-c", str(cfg), "status")
    assert "Traceback" not in st.stderr
    ghost = [line for line in st.stdout.splitlines() if line.startswith("ghost")]
    assert ghost and "unreachable" in ghost[0], st.stdout
