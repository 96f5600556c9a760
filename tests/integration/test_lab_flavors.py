"""The lab on every server flavor: MariaDB 10.11 (host), MariaDB 11.8 and MySQL 9.7 (fetched).

Each flavor gets a real lab (db1 + 2 replicas + redis), proven replicating; roleswap's
status and a real swap there and back run against it through the CLI; a SIGKILLed
node comes back read-only through ``start_node_again``; ``lab down`` leaves no process.
Select one flavor with ``-k mysql-9.7`` (the parametrised ids are the flavor names) or
``--server mysql-9.7``: a ``--server`` other than the default runs only that flavor here
(scripts/test re-runs the integration suite once per further flavor); the default runs
all three.  A flavor that cannot be fetched here (no apt/dpkg/keyring, not amd64) is
skipped with the reason; in CI ``scripts/_setup.sh`` has already fetched them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from roleswap.config import load_config
from roleswap.errors import LabError
from roleswap.lab import Lab, lab_down, lab_up, nodes, procs
from roleswap.lab.flavors import DEFAULT_SERVER, FLAVORS, flavor, server_rows
from roleswap.lab.node import root_connect_socket
from roleswap.mysql.dialect import dialect_for
from roleswap.mysql.grants import AccountGrants, control_needs, missing_needs

NAMES = list(FLAVORS)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roleswap", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def processes_mentioning(text: str) -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and int(e.name) != os.getpid() and procs.alive(int(e.name), text)]


def root_query(lab: Lab, name: str, sql: str, args: object = None) -> list[tuple[object, ...]]:
    conn = root_connect_socket(Path(lab.node(name).dir) / "mysqld.sock")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def skip_unless_available(name: str) -> None:
    row = next(r for r in server_rows() if r["name"] == name)
    if row["state"] == "missing":
        pytest.skip(f"{name} is not available here: {row['detail']}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "flavor_name" in metafunc.fixturenames:
        server = metafunc.config.getoption("--server", default=None)
        names = [server] if server in FLAVORS and server != DEFAULT_SERVER else NAMES
        metafunc.parametrize("flavor_name", names, scope="module")


@pytest.fixture(scope="module")
def flavor_lab(flavor_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of flavor ``flavor_name`` (fetched first if needed), down afterwards."""
    name = flavor_name
    skip_unless_available(name)
    d = tmp_path_factory.mktemp(name) / "lab"
    started = lab_up(d, replicas=2, server=name)
    yield started
    lab_down(d)


def status_json(lab: Lab) -> dict[str, dict[str, object]]:
    st = run_cli("-c", str(lab.config_path), "status", "--json")
    assert st.returncode == 0, st.stderr
    return {s["name"]: s for s in json.loads(st.stdout)["servers"]}


def wait_roles(lab: Lab, want: dict[str, str], timeout: float = 20) -> dict[str, dict[str, object]]:
    """Status once every server has its role and every replica's threads run (a
    replica reconnecting after a restart is briefly 'Connecting')."""
    deadline = time.monotonic() + timeout
    while True:
        servers = status_json(lab)
        ok = {n: s["role"] for n, s in servers.items()} == want and all(
            s["io_running"] == "Yes" and s["sql_running"] for s in servers.values() if s["role"] == "replica")
        if ok or time.monotonic() > deadline:
            return servers
        time.sleep(0.2)


# -- per flavor, in order: up, status, swap and back, kill + restart, down ------------------
def test_up_runs_the_flavor_and_proves_replication(flavor_lab: Lab) -> None:
    fl = flavor(flavor_lab.server)
    assert Lab.load(flavor_lab.dir).server == fl.name
    dbs = [n for n in flavor_lab.nodes if n.is_db]
    assert [n.name for n in dbs] == ["db1", "db2", "db3"]
    for n in dbs:
        assert n.kind == fl.engine and n.alive()
        cmd = procs.cmdline(n.pid)
        assert f"--defaults-file={n.dir}/my.cnf" in cmd
        if fl.fetched:  # way B: the cached loader runs the cached server
            assert cmd.split()[0].endswith("/usr/lib64/ld-linux-x86-64.so.2"), cmd
            assert f"/servers/{fl.name}/root/usr/sbin/{fl.daemon}" in cmd, cmd
        cnf = (Path(n.dir) / "my.cnf").read_text().splitlines()
        assert "read_only=1" in cnf  # every node starts read-only, the primary too
        if fl.engine == "mysql":
            assert "super_read_only=1" in cnf and "mysqlx=OFF" in cnf
    version = str(root_query(flavor_lab, "db1", "SELECT VERSION()")[0][0])
    assert version.startswith(fl.series + "."), version
    # lab_up proved replication already; the nodes are distinct servers
    uuids = {root_query(flavor_lab, n, "SELECT @@server_uuid" if fl.engine == "mysql"
                        else "SELECT @@server_id")[0][0] for n in ("db1", "db2", "db3")}
    assert len(uuids) == 3


def test_status_shows_version_and_roles(flavor_lab: Lab) -> None:
    fl = flavor(flavor_lab.server)
    servers = wait_roles(flavor_lab, {"db1": "primary", "db2": "replica", "db3": "replica"})
    for name, s in servers.items():
        assert str(s["version"]).startswith(fl.series + "."), s
        assert s["flavor"] == ("mysql" if fl.engine == "mysql" else "mariadb")
        assert s["read_only"] is (name != "db1")
        if fl.engine == "mysql":
            assert s["super_read_only"] is (name != "db1")
        if name != "db1":
            assert s["source"] == "db1" and s["io_running"] == "Yes" and s["sql_running"] is True


def test_accounts_least_privilege(flavor_lab: Lab) -> None:
    """The control account holds exactly what roleswap's preflight asks for (no SUPER on
    MySQL); the app account cannot write through read_only."""
    fl = flavor(flavor_lab.server)
    cfg = load_config(flavor_lab.config_path)
    assert cfg.lab is not None
    d2 = cfg.server("db2")
    ctl = pymysql.connect(host=d2.host, port=d2.port, user=cfg.mysql.user,
                          password=cfg.mysql.password.reveal(), autocommit=True, ssl_disabled=True)
    try:
        with ctl.cursor() as cur:  # caching_sha2_password over TCP without TLS on MySQL
            cur.execute("SHOW GRANTS")
            grants = AccountGrants.parse(str(r[0]) for r in cur.fetchall())
            cur.execute("SELECT VERSION()")
            d = dialect_for(str((cur.fetchone() or ("",))[0]))
    finally:
        ctl.close()
    assert missing_needs(grants, control_needs(d.flavor, d.version)) == []
    if fl.engine == "mysql":
        assert not grants.has_global("SUPER")
    app = pymysql.connect(host=d2.host, port=d2.port, user=cfg.lab.app_user,
                          password=cfg.lab.app_password.reveal(), database="app", autocommit=True,
                          ssl_disabled=True)
    try:
        with app.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("CREATE TABLE app.must_fail (id INT)")
        assert err.value.args[0] == 1290
    finally:
        app.close()


@pytest.mark.parametrize(("src", "dst"), [("db1", "db2"), ("db2", "db1")], ids=["there", "back"])
def test_real_swap(flavor_lab: Lab, src: str, dst: str) -> None:
    res = run_cli("-c", str(flavor_lab.config_path), "--from", src, "--to", dst, "--yes", "--json")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["rolled_back"] is False
    others = {"db1", "db2", "db3"} - {dst}
    servers = wait_roles(flavor_lab, {dst: "primary", **{n: "replica" for n in others}})
    assert {n: s["role"] for n, s in servers.items()} == {dst: "primary", **{n: "replica" for n in others}}
    assert all(s["source"] == dst for n, s in servers.items() if n != dst)


def test_killed_primary_restarts_read_only(flavor_lab: Lab) -> None:
    fl = flavor(flavor_lab.server)
    old = flavor_lab.node("db1").pid
    assert nodes.kill_node(flavor_lab.dir, "db1", signal.SIGKILL) == old
    assert not procs.alive(old)
    new = nodes.start_node_again(flavor_lab.dir, "db1")
    assert new != old and Lab.load(flavor_lab.dir).node("db1").pid == new
    cols = "@@read_only, @@super_read_only" if fl.engine == "mysql" else "@@read_only, 1"
    assert root_query(flavor_lab, "db1", f"SELECT {cols}") == [(1, 1)]
    # what an operator does after checking: unfence it, as roleswap's promote does
    d = dialect_for(str(root_query(flavor_lab, "db1", "SELECT VERSION()")[0][0]))
    for sql, args in d.unfence():
        root_query(flavor_lab, "db1", sql, args or None)
    servers = wait_roles(flavor_lab, {"db1": "primary", "db2": "replica", "db3": "replica"})
    assert servers["db1"]["read_only"] is False


def test_down_leaves_no_process(flavor_lab: Lab) -> None:
    pids = [n.pid for n in flavor_lab.nodes]
    t0 = time.monotonic()
    stopped = lab_down(flavor_lab.dir)
    assert sorted(stopped) == ["db1", "db2", "db3", "redis"]
    # SIGKILL: a clean MySQL shutdown took ~10 s (dump threads); a 10x margin over ~0.1 s
    assert time.monotonic() - t0 < 10
    assert not flavor_lab.dir.exists()
    assert not [p for p in pids if procs.alive(p)]
    assert processes_mentioning(str(flavor_lab.dir)) == []


# -- flavor-independent -------------------------------------------------------------------------
def test_lab_servers_lists_every_flavor() -> None:
    res = run_cli("lab", "servers")
    assert res.returncode == 0, res.stderr
    for name in NAMES:
        assert any(line.startswith(name + " ") for line in res.stdout.splitlines()), res.stdout
    rows = json.loads(run_cli("lab", "servers", "--json").stdout)
    assert [r["name"] for r in rows] == NAMES
    for r in rows:
        assert r["state"] in ("ready", "installable", "missing") and r["detail"]
        if r["state"] == "ready" and FLAVORS[r["name"]].fetched:
            assert r["version"].startswith(FLAVORS[r["name"]].series + ".")


def test_cli_choices_match_the_flavor_table() -> None:
    from roleswap.cli import SERVER_NAMES

    assert tuple(FLAVORS) == SERVER_NAMES


def test_unknown_flavor_is_refused_before_anything_starts(tmp_path: Path) -> None:
    d = tmp_path / "lab"
    with pytest.raises(LabError) as err:
        lab_up(d, server="postgres-17")
    assert "mysql-9.7" in err.value.remedy
    assert not d.exists()
    res = run_cli("lab", "up", "--dir", str(d), "--server", "mysql-8.0")
    assert res.returncode == 2 and "mysql-9.7" in res.stderr


@pytest.mark.parametrize("name", ["mysql-9.7"])
def test_mysql_file_position_lab_swaps(tmp_path: Path, name: str) -> None:
    """--no-gtid on MySQL: gtid_mode=OFF, replicas from the source's first binlog."""
    skip_unless_available(name)
    d = tmp_path / "lab"
    started = lab_up(d, replicas=1, gtid=False, server=name)
    try:
        assert root_query(started, "db2", "SELECT @@gtid_mode") == [("OFF",)]
        for src, dst in (("db1", "db2"), ("db2", "db1")):
            res = run_cli("-c", str(started.config_path), "--from", src, "--to", dst, "--yes", "--json")
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    finally:
        lab_down(d)
    assert processes_mentioning(str(d)) == []


def test_fetch_cold_cache_is_shared_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two first uses at once: one downloads (with progress), the other waits and reuses
    it; the system's apt state is untouched.  (~6 s and 17 MB from the Debian mirror.)"""
    from roleswap.lab import debfetch

    if debfetch.missing_tools():
        pytest.skip(f"cannot fetch here: {debfetch.missing_tools()}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fl = FLAVORS["mariadb-11.8"]
    system = {p: p.stat().st_mtime_ns for p in (Path("/var/lib/dpkg/status"), Path("/var/lib/apt/lists"))
              if p.exists()}
    said: dict[int, list[str]] = {0: [], 1: []}
    got: dict[int, Path] = {}

    def fetch(i: int) -> None:
        got[i] = debfetch.ensure(fl.name, str(fl.suite), fl.packages, fl.packages[0], fl.series,
                                 said[i].append, fl.loose).root

    threads = [threading.Thread(target=fetch, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got[0] == got[1] == tmp_path / "cache/roleswap/servers/mariadb-11.8/root"
    lines = said[0] + said[1]
    assert sum("downloading" in m for m in lines) == 1, lines
    assert any("resolving" in m for m in lines) and any("unpacking" in m for m in lines)
    assert (got[0] / "usr/sbin/mariadbd").is_file()
    # the loose package's files, without its dependency closure (no perl, no galera)
    assert (got[0] / "usr/lib/mysql/plugin/auth_ed25519.so").is_file()
    assert not (got[0] / "usr/bin/perl").exists()
    assert not list((tmp_path / "cache/roleswap/servers").glob(".tmp-*"))
    t0 = time.monotonic()
    again: list[str] = []
    assert debfetch.ensure(fl.name, str(fl.suite), fl.packages, fl.packages[0], fl.series,
                           again.append, fl.loose).root == got[0]
    assert again == [] and time.monotonic() - t0 < 1
    assert {p: p.stat().st_mtime_ns for p in system} == system
