"""The server images (roleswap/server:<flavor>) against their contract (docker/README.md):
a primary and a replica start and replicate, with exactly the process lab's accounts;
every server's config file says read_only; a restarted primary comes back read-only;
missing or wrong environment stops the container at once, naming the variable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from roleswap.lab.mariadb import CONTROL_GRANTS as MARIADB_CONTROL
from roleswap.lab.mariadb import MariaDBEngine
from roleswap.lab.mysql import CONTROL_GRANTS as MYSQL_CONTROL
from roleswap.lab.mysql import MySQLEngine
from roleswap.lab.node import APP_GRANTS
from tests.containers.conftest import (
    FLAVORS,
    READY_LINE,
    REDIS_IMAGE,
    SERVER_IMAGE,
    DockerLab,
    Server,
    grant_privileges,
    passwords,
    tail,
    wait_until,
)

CONTROL = {"mariadb": MARIADB_CONTROL, "mysql": MYSQL_CONTROL}
REPL = {"mariadb": MariaDBEngine.repl_grants, "mysql": MySQLEngine.repl_grants}


def privileges(text: str) -> set[str]:
    return {p.strip() for p in text.split(",")}


class Pair:
    def __init__(self, primary: Server, replica: Server, secrets: dict[str, str]) -> None:
        self.primary, self.replica, self.secrets = primary, replica, secrets


def start_pair(lab: DockerLab, flavor: str, gtid: bool = True) -> Pair:
    """db1 (primary) and db2 (its replica) on a fresh network.  db2 takes its passwords
    from files (the *_PASSWORD_FILE variables), db1 from the environment."""
    net = lab.network()
    pw = passwords()
    env = {"ROLESWAP_GTID": "1" if gtid else "0"}
    db1 = lab.server(flavor, "db1", net, 1, "primary", passwords=pw, env=env)
    files = {k.lower(): v.encode() + b"\n" for k, v in pw.items()}  # trailing newline dropped
    file_env = {f"{k}_FILE": f"/run/secrets/{k.lower()}" for k in pw}
    db2 = lab.server(flavor, "db2", net, 2, "replica", source="db1:3306", passwords={},
                     env={**env, **file_env}, files=files)
    lab.wait_ready(db1, db2)
    return Pair(db1, db2, {**pw, "root1": db1.root_password, "root2": db2.root_password})


def app_connect(srv: Server, pw: dict[str, str]) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=srv.port, user="app",
                           password=pw["ROLESWAP_APP_PASSWORD"].encode(), database="app",
                           autocommit=True, connect_timeout=5, ssl_disabled=True)


@pytest.fixture(scope="module", params=FLAVORS)
def pair(request: pytest.FixtureRequest, docker_client: Any, require_images: Any) -> Iterator[Pair]:
    """One primary/replica pair per flavor, shared by the tests that only read it."""
    require_images(SERVER_IMAGE.format(request.param))
    lab = DockerLab(docker_client)
    try:
        yield start_pair(lab, request.param)
    finally:
        lab.cleanup()


def test_replication_works_with_the_lab_accounts(pair: Pair) -> None:
    db1, db2 = pair.primary, pair.replica
    # the primary is writable at run time, the replica is not; roles are what was asked
    assert db1.query("SELECT @@GLOBAL.read_only AS ro")[0]["ro"] == 0
    assert db2.query("SELECT @@GLOBAL.read_only AS ro")[0]["ro"] == 1
    if db1.engine == "mysql":
        assert db2.query("SELECT @@GLOBAL.super_read_only AS s")[0]["s"] == 1
    r = db2.replica()
    assert r is not None and r.using_gtid == ("Auto_Position" if db1.engine == "mysql" else "Slave_Pos")
    assert db2.threads_running() and db2.source_host() == "db1"
    # report_host is the container's hostname; server ids as given
    assert db1.query("SELECT @@GLOBAL.report_host AS h, @@GLOBAL.server_id AS i")[0] == {"h": "db1", "i": 1}
    assert db2.query("SELECT @@GLOBAL.report_host AS h, @@GLOBAL.server_id AS i")[0] == {"h": "db2", "i": 2}

    # exactly the process lab's privileges (on both: every node can become the primary)
    for srv in (db1, db2):
        grants = [next(iter(r.values())) for r in srv.query("SHOW GRANTS FOR 'roleswap'@'%'")]
        # (MySQL lists its dynamic privileges in a GRANT line of their own)
        assert set().union(*(grant_privileges(g) for g in grants if " ON *.* " in g)) \
            == privileges(CONTROL[srv.engine])
        assert any("ON `roleswap`.*" in g and "ALL PRIVILEGES" in g for g in grants), grants
        grants = [next(iter(r.values())) for r in srv.query("SHOW GRANTS FOR 'repl'@'%'")]
        assert set().union(*(grant_privileges(g) for g in grants if " ON *.* " in g)) \
            == privileges(REPL[srv.engine])
        grants = [next(iter(r.values())) for r in srv.query("SHOW GRANTS FOR 'app'@'%'")]
        app_line = next(g for g in grants if "ON `app`.*" in g)
        app_privileges = app_line.split(" ON ")[0][len("GRANT "):].split(",")
        assert {p.strip() for p in app_privileges} == privileges(APP_GRANTS)
        # root only over the socket, plus root@'%' because ROLESWAP_ROOT_PASSWORD was set
        roots = {r["Host"] for r in srv.query("SELECT Host FROM mysql.user WHERE User = 'root'")}
        assert roots == {"localhost", "%"}
        assert not srv.query("SELECT User FROM mysql.user WHERE User = ''")

    # a write through the app account (the passwords with quotes and backslashes work)
    # reaches the replica; the app account cannot write on the read-only replica
    conn = app_connect(db1, pair.secrets)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute("INSERT INTO t VALUES (1, 'one')")
    finally:
        conn.close()
    wait_until(lambda: db2.query("SELECT COUNT(*) AS n FROM information_schema.tables "
                                 "WHERE table_schema = 'app' AND table_name = 't'")[0]["n"] == 1
               and db2.query("SELECT v FROM app.t WHERE id = 1") == [{"v": "one"}], 20, "the row on db2")
    conn = app_connect(db2, pair.secrets)
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as err:
            cur.execute("INSERT INTO t VALUES (2, 'two')")
        assert err.value.args[0] in (1290, 1836), err.value
    finally:
        conn.close()
    # no GTID of the replica's own (the accounts were created unlogged)
    if db1.engine == "mysql":
        own = db2.query("SELECT @@GLOBAL.server_uuid AS u, @@GLOBAL.gtid_executed AS g")[0]
        assert own["u"] not in own["g"]
        assert db1.query("SELECT @@GLOBAL.server_uuid AS u")[0]["u"] != own["u"], "a baked-in server UUID"
    else:
        assert "-2-" not in db2.query("SELECT @@GLOBAL.gtid_binlog_pos AS g")[0]["g"]


def test_config_file_starts_every_server_read_only(pair: Pair) -> None:
    for srv in (pair.primary, pair.replica):
        rc, cnf = srv.exec("cat", "/etc/mysql/my.cnf")
        assert rc == 0
        section = cnf.split("[client]")[0]
        lines = {line.strip() for line in section.splitlines()}
        assert "read_only=1" in lines
        if srv.engine == "mysql":
            assert "super_read_only=1" in lines
            assert {"gtid_mode=ON", "enforce_gtid_consistency=ON", "mysqlx=OFF"} <= lines
        else:
            assert "gtid_strict_mode=1" in lines
        skip = "skip_name_resolve=ON" if srv.engine == "mysql" else "skip_name_resolve=1"
        assert {"binlog_format=ROW", skip} <= lines
        # the server really runs from it, and nothing on its command line overrides read_only
        rc, cmdline = srv.exec("sh", "-c", "tr '\\0' ' ' </proc/$(cat /run/mysqld/mysqld.pid)/cmdline")
        assert rc == 0 and cmdline.split()[1] == "--defaults-file=/etc/mysql/my.cnf", cmdline
        assert "read_only" not in cmdline and "read-only" not in cmdline, cmdline


def test_logs_never_show_a_password(pair: Pair) -> None:
    for srv in (pair.primary, pair.replica):
        logs = srv.logs()
        assert READY_LINE in logs
        for name, secret in pair.secrets.items():
            assert secret not in logs, f"{name} appears in the log of {srv.name}"
        # nor does the server process inherit them
        rc, env = srv.exec("sh", "-c", "cat /proc/$(cat /run/mysqld/mysqld.pid)/environ | tr '\\0' '\\n'")
        assert rc == 0 and "PASSWORD" not in env, env


@pytest.mark.parametrize("flavor", FLAVORS)
def test_restarted_primary_comes_back_read_only(flavor: str, lab: DockerLab, require_images: Any) -> None:
    require_images(SERVER_IMAGE.format(flavor))
    p = start_pair(lab, flavor)
    db1, db2 = p.primary, p.replica
    assert db1.query("SELECT @@GLOBAL.read_only AS ro")[0]["ro"] == 0
    t0 = time.monotonic()
    db1.container.restart(timeout=30)
    lab.wait_ready(db1, count=2, timeout=60)
    took = time.monotonic() - t0
    assert "restarted on an initialised datadir" in db1.logs()
    # it did not make itself writable (its my.cnf says read_only) ...
    assert db1.query("SELECT @@GLOBAL.read_only AS ro")[0]["ro"] == 1, f"restart took {took:.1f} s"
    if db1.engine == "mysql":
        assert db1.query("SELECT @@GLOBAL.super_read_only AS s")[0]["s"] == 1
    # ... kept its accounts and data, and replication was not touched: db2 still
    # replicates from db1 (reconnected), db1 has no replication of its own
    accounts = db1.query("SELECT COUNT(*) AS n FROM mysql.user WHERE User IN ('roleswap', 'repl', 'app')")
    assert accounts[0]["n"] == 3
    assert db1.replica() is None
    wait_until(db2.threads_running, 30, "db2's replication threads after db1's restart")
    assert db2.source_host() == "db1"
    # a replica restarted likewise stays a read-only replica of its source
    db2.container.restart(timeout=30)
    lab.wait_ready(db2, count=2, timeout=60)
    assert db2.query("SELECT @@GLOBAL.read_only AS ro")[0]["ro"] == 1
    wait_until(db2.threads_running, 30, "db2's replication threads after its own restart")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_crashed_primary_comes_back_read_only(flavor: str, lab: DockerLab, require_images: Any) -> None:
    """SIGKILL (`docker kill`), then start: crash recovery, and still not writable."""
    require_images(SERVER_IMAGE.format(flavor))
    p = start_pair(lab, flavor)
    db1 = p.primary
    conn = app_connect(db1, p.secrets)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO t VALUES (1)")
    finally:
        conn.close()
    db1.container.kill()
    db1.container.wait(timeout=30)
    db1.container.start()
    lab.wait_ready(db1, count=2, timeout=90)
    assert db1.query("SELECT @@GLOBAL.read_only AS ro")[0]["ro"] == 1
    assert db1.query("SELECT id FROM app.t") == [{"id": 1}]  # committed before the kill
    wait_until(p.replica.threads_running, 30, "db2's replication threads after db1's crash")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_binlog_position_replication(flavor: str, lab: DockerLab, require_images: Any) -> None:
    """ROLESWAP_GTID=0: the replica starts at the primary's first binlog, by file/position."""
    require_images(SERVER_IMAGE.format(flavor))
    p = start_pair(lab, flavor, gtid=False)
    st = p.replica.replica()
    assert st is not None and st.using_gtid == "No"  # neither Slave_Pos nor Auto_Position
    if p.replica.engine == "mysql":
        assert p.primary.query("SELECT @@GLOBAL.gtid_mode AS g")[0]["g"] == "OFF"
    conn = app_connect(p.primary, p.secrets)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO t VALUES (7)")
    finally:
        conn.close()
    wait_until(lambda: p.replica.query("SELECT COUNT(*) AS n FROM information_schema.tables "
                                       "WHERE table_schema = 'app' AND table_name = 't'")[0]["n"] == 1
               and p.replica.query("SELECT id FROM app.t") == [{"id": 7}], 20, "the row on db2")


MISSING = [
    ({}, "ROLESWAP_SERVER_ID"),
    ({"ROLESWAP_SERVER_ID": "1"}, "ROLESWAP_ROLE"),
    ({"ROLESWAP_SERVER_ID": "x1", "ROLESWAP_ROLE": "primary"}, "ROLESWAP_SERVER_ID='x1'"),
    ({"ROLESWAP_SERVER_ID": "2", "ROLESWAP_ROLE": "replica"}, "ROLESWAP_SOURCE"),
    ({"ROLESWAP_SERVER_ID": "2", "ROLESWAP_ROLE": "leader"}, "ROLESWAP_ROLE='leader'"),
    ({"ROLESWAP_SERVER_ID": "1", "ROLESWAP_ROLE": "primary", "ROLESWAP_CONTROL_PASSWORD": "a",
      "ROLESWAP_REPL_PASSWORD": "b"}, "ROLESWAP_APP_PASSWORD"),
    ({"ROLESWAP_SERVER_ID": "1", "ROLESWAP_ROLE": "primary", "ROLESWAP_CONTROL_PASSWORD": "a",
      "ROLESWAP_CONTROL_PASSWORD_FILE": "/x", "ROLESWAP_REPL_PASSWORD": "b", "ROLESWAP_APP_PASSWORD": "c"},
     "both ROLESWAP_CONTROL_PASSWORD and ROLESWAP_CONTROL_PASSWORD_FILE"),
]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_missing_or_wrong_env_exits_at_once(flavor: str, lab: DockerLab, require_images: Any) -> None:
    require_images(SERVER_IMAGE.format(flavor))
    for env, named in MISSING:
        c = lab.create(SERVER_IMAGE.format(flavor), f"bad{len(lab.containers)}", None, environment=env)
        t0 = time.monotonic()
        c.start()
        result = c.wait(timeout=30)
        took = time.monotonic() - t0
        out = c.logs().decode(errors="replace")
        assert result["StatusCode"] != 0, out
        assert named in out, f"{env} -> {out}"
        assert "roleswap-server: error:" in out and READY_LINE not in out
        assert took < 10, f"took {took:.1f} s to fail"
        # it failed before any server started
        assert "ready for connections" not in out, tail(out)


def test_redis_image(lab: DockerLab, require_images: Any) -> None:
    require_images(REDIS_IMAGE)
    import redis

    c = lab.create(REDIS_IMAGE, "redis", None, ports={"6379/tcp": ("127.0.0.1", None)})
    c.start()
    c.reload()
    port = int(c.ports["6379/tcp"][0]["HostPort"])
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    wait_until(lambda: _pings(r), 20, "redis to answer")
    assert r.config_get("save") == {"save": ""} and r.config_get("appendonly") == {"appendonly": "no"}
    assert r.config_get("protected-mode") == {"protected-mode": "no"}
    r.close()


def _pings(r: Any) -> bool:
    try:
        return bool(r.ping())
    except Exception:
        return False
