"""Every preflight refusal, created for real: exit 3 and the topology unchanged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import redis

from roleswap.coord.lock import ClusterLock
from roleswap.lab import procs
from roleswap.mysql.grants import control_needs
from tests.conftest import RunningLab
from tests.integration.swaphelp import resync_replica, roleswap, snapshot, wait_healthy


@pytest.fixture
def lab(module_lab: RunningLab) -> Iterator[RunningLab]:
    """The module lab, checked healthy around db1 before and after each test."""
    wait_healthy(module_lab, "db1")
    yield module_lab
    wait_healthy(module_lab, "db1")


def refused(lab: RunningLab, *args: str, config: str | None = None) -> dict[str, object]:
    before = snapshot(lab)
    res = roleswap(config or lab, *args, "--yes", "--json")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
    data = json.loads(res.stdout.splitlines()[-1])
    assert data["ok"] is False and data["error"]["type"] == "PreflightError"
    assert data["error"]["remedy"], "every refusal names a fix"
    assert snapshot(lab) == before
    return data


def failed_checks(data: dict[str, object]) -> dict[str, str]:
    return {c["name"]: c["message"] for c in data["checks"] if c["status"] == "fail"}  # type: ignore[attr-defined,index]


def test_unknown_or_equal_names(lab: RunningLab) -> None:
    data = refused(lab, "--from", "db1", "--to", "nope")
    assert "nope" in failed_checks(data)["servers"]
    data = refused(lab, "--from", "db1", "--to", "db1")
    assert "both db1" in failed_checks(data)["servers"]


def test_from_is_not_the_primary(lab: RunningLab) -> None:
    data = refused(lab, "--from", "db2", "--to", "db3")
    assert "expected exactly db2" in failed_checks(data)["primary"]


def test_sql_thread_stopped(lab: RunningLab) -> None:
    lab.stop_replica("db2", "SQL_THREAD")
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        assert "db2" in failed_checks(data)["threads"]
    finally:
        lab.start_replica("db2", "SQL_THREAD")


def test_lag_over_the_limit(lab: RunningLab) -> None:
    lab.stop_replica("db2")
    lab.change_source("db2", DELAY=30)
    lab.start_replica("db2")
    try:
        lab.query("db1", "CREATE TABLE IF NOT EXISTS app.lagtest (id INT PRIMARY KEY)")
        lab.query("db1", "REPLACE INTO app.lagtest VALUES (1)")
        time.sleep(1.2)  # the event is now >= 1 s old and not applied on db2
        data = refused(lab, "--from", "db1", "--to", "db2", "--max-lag", "0.5")
        assert "behind" in failed_checks(data)["lag"]
    finally:
        lab.stop_replica("db2")
        lab.change_source("db2", DELAY=0)
        lab.start_replica("db2")
        lab.query("db1", "DROP TABLE IF EXISTS app.lagtest")


def test_errant_transaction_on_target(tmp_path: Path, module_lab: RunningLab) -> None:
    lab = module_lab
    assert lab.wait_gtid("db2", lab.gtid_position("db1"), 10)
    # A privileged write on the replica, binlogged as db2's own (its server_id / uuid).
    lab.write_through_fence("db2", "CREATE DATABASE IF NOT EXISTS errant_db")
    own = str(lab.run("db2", [lab.dialect("db2").own_gtid_prefix()])[0]["g"])
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        assert own in failed_checks(data)["errant"]
        # db3 is clean: a swap to it would pass this check
        res = roleswap(lab, "--from", "db1", "--to", "db3", "--check", "--json")
        assert res.returncode == 0, res.stdout
    finally:
        # Heal: make the primary own the same GTID history (an empty transaction
        # would be the production fix; for the lab, drop and re-sync db2's state).
        lab.write_through_fence("db2", "DROP DATABASE IF EXISTS errant_db")
        resync_replica(lab, "db2")


def test_long_transaction_on_primary(lab: RunningLab) -> None:
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.longtrx (id INT PRIMARY KEY)")
    holder = lab.app("db1")
    try:
        with holder.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO app.longtrx VALUES (1)")
        # INNODB_TRX.trx_started has whole seconds, so the age read is floor(now) -
        # floor(start): after 1.5 s (+ a fast CLI start) it can still read 1, which is not
        # "older than 1 s". After >= 2 s it reads >= 2 on every server.
        time.sleep(2.1)
        data = refused(lab, "--from", "db1", "--to", "db2", "--long-trx", "1")
        assert "transaction" in failed_checks(data)["long-trx"]
    finally:
        holder.rollback()
        holder.close()
        lab.query("db1", "DROP TABLE IF EXISTS app.longtrx")


def test_redis_unreachable(lab: RunningLab, tmp_path: Path) -> None:
    port = procs.free_port()
    assert lab.config.redis_url is not None
    text = lab.config_path.read_text().replace(lab.config.redis_url.reveal(),
                                               f"redis://127.0.0.1:{port}/0")
    cfg = tmp_path / "noredis.toml"
    cfg.write_text(text)
    data = refused(lab, "--from", "db1", "--to", "db2", config=str(cfg))
    assert "unreachable" in failed_checks(data)["redis"]
    # the endpoint switch needs Redis too
    refused(lab, "--from", "db1", "--to", "db2", "--no-pause", config=str(cfg))
    # ...but with --no-pause and no Redis-based switch, a swap still works (warned: no lock)
    for source, target in (("db1", "db2"), ("db2", "db1")):
        res = roleswap(str(cfg), "--from", source, "--to", target, "--no-pause", "--switch", "none",
                       "--yes", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        out = json.loads(res.stdout)
        warn = {c["name"]: c for c in out["checks"]}["redis"]
        assert warn["status"] == "warn" and "no cluster lock" in warn["message"]
        wait_healthy(lab, target)


def test_cluster_lock_held(lab: RunningLab) -> None:
    assert lab.config.redis_url is not None
    client = redis.Redis.from_url(lab.config.redis_url.reveal())
    lock = ClusterLock(client, lab.config.cluster, ttl=30)
    assert lock.acquire("someone-else")
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        assert "someone-else" in failed_checks(data)["lock"]
    finally:
        lock.release()


def test_control_account_lacks_privileges(lab: RunningLab, tmp_path: Path) -> None:
    """Every privilege roleswap needs except the one that fences (read_only on MariaDB,
    super_read_only on MySQL): refused, naming it."""
    d = lab.dialect("db1")
    fence_need = f"set {d.fence_var}"
    weak = ", ".join(dict.fromkeys(n.any_of[0] for n in control_needs(d.flavor, d.version)
                                   if n.what != fence_need))
    for n in ("db1", "db2", "db3"):
        lab.write_through_fence(n, "SET SESSION sql_log_bin=0",
                                "CREATE USER IF NOT EXISTS 'weak'@'%' IDENTIFIED BY 'weakpw'",
                                f"GRANT SELECT, {weak} ON *.* TO 'weak'@'%'")
    text = lab.config_path.read_text()
    head, rest = text.split("[mysql]", 1)
    _body, tail = rest.split("\n\n", 1)
    cfg = tmp_path / "weak.toml"
    cfg.write_text(head + '[mysql]\nuser = "weak"\npassword = "weakpw"\n\n' + tail)
    try:
        data = refused(lab, "--from", "db1", "--to", "db2", config=str(cfg))
        lacks = failed_checks(data)["privileges db1"]
        assert fence_need in lacks and lacks.count("(") == 1, lacks  # only that one
    finally:
        for n in ("db1", "db2", "db3"):
            lab.write_through_fence(n, "SET SESSION sql_log_bin=0", "DROP USER IF EXISTS 'weak'@'%'")


def test_to_is_not_a_direct_replica(lab: RunningLab) -> None:
    """db3 chained under db2: it does not replicate directly from db1."""
    lab.replicate_from("db3", "db2")
    try:
        data = refused(lab, "--from", "db1", "--to", "db3")
        assert "not from db1" in failed_checks(data)["replicates"]
    finally:
        lab.replicate_from("db3", "db1")


def test_fence_blocked_by_lock_tables_rolls_back(lab: RunningLab) -> None:
    """Not a preflight refusal: read_only waits for LOCK TABLES, gives up after
    --fence-timeout, and the swap rolls back (exit 4) with db1 still writable."""
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.locked (id INT PRIMARY KEY)")
    holder = lab.app("db1")
    released = threading.Event()
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES app.locked WRITE")
        before = snapshot(lab)
        res = roleswap(lab, "--from", "db1", "--to", "db2", "--yes", "--json",
                       "--fence-timeout", "1")
        assert res.returncode == 4, res.stdout + res.stderr
        data = json.loads(res.stdout.splitlines()[-1])
        assert data["rolled_back"] is True and "fence" in data["error"]["message"]
        assert "1205" in data["error"]["message"]  # the bound held for read_only itself
        assert snapshot(lab) == before
    finally:
        with holder.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        released.set()
        holder.close()
        lab.query("db1", "DROP TABLE IF EXISTS app.locked")


def test_app_account_cannot_write_to_fenced_primary(lab: RunningLab) -> None:
    """The premise of fencing: read_only stops the application account (error 1290)."""
    assert lab.config.lab is not None
    s = lab.config.servers["db2"]
    conn = pymysql.connect(host=s.host, port=s.port, user=lab.config.lab.app_user,
                           password=lab.config.lab.app_password.reveal(), ssl_disabled=True)
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("CREATE TABLE app.nope (id INT)")
        assert err.value.args[0] == 1290
    finally:
        conn.close()
