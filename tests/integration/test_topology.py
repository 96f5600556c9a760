"""read_topology against the real lab (db1 primary, db2/db3 GTID replicas of db1), on
whichever server flavor the lab runs: what every flavor has is asserted for all, a
flavor's own fields where its dialect reads them.

The lab is shared by the session: these tests only read, write rows into a
probe database of their own (dropped afterwards) and never change roles.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from roleswap.config import Config, Credentials, Secret, ServerConfig
from roleswap.mysql.conn import connect, run
from roleswap.mysql.dialect import gtid_wait_reached, pos_wait_reached
from roleswap.mysql.gtid import extra_gtids
from roleswap.mysql.topology import Topology, read_topology

PROBE_DB = "topology_probe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def config(lab: Any) -> Config:
    cfg: Config = lab.config
    return cfg


@pytest.fixture(scope="module")
def probe(lab: Any) -> Iterator[None]:
    lab.query("db1", f"CREATE DATABASE IF NOT EXISTS {PROBE_DB}")
    lab.query("db1", f"CREATE TABLE IF NOT EXISTS {PROBE_DB}.t "
                     "(id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)")
    yield
    lab.query("db1", f"DROP DATABASE IF EXISTS {PROBE_DB}")


def wait_caught_up(config: Config, topo: Topology, timeout: float = 10.0) -> None:
    """Wait on every replica for db1's GTID position and binlog coordinates,
    using the dialect's own wait statements (so those run against a live server)."""
    db1 = topo.by_name("db1")
    assert db1.gtid_position is not None and db1.dialect is not None
    assert db1.binlog_file is not None and db1.binlog_pos is not None
    for name in ("db2", "db3"):
        cfg = config.server(name)
        conn = connect(cfg, config.mysql, timeout=2, tls=False, read_timeout=timeout + 5)
        try:
            d = db1.dialect
            [row] = run(conn, cfg, [d.wait_for_gtid(db1.gtid_position, timeout)])
            assert gtid_wait_reached(next(iter(row.values()))), f"{name} did not catch up"
            [row] = run(conn, cfg, [d.wait_for_pos(db1.binlog_file, db1.binlog_pos, timeout)])
            assert pos_wait_reached(next(iter(row.values()))) is True
        finally:
            conn.close()


def test_roles_read_from_servers(lab: Any, config: Config) -> None:
    topo = read_topology(config)
    assert [s.name for s in topo.servers] == ["db1", "db2", "db3"]
    want = lab.dialect("db1")
    for s in topo.servers:
        assert s.ok, s.error
        d = s.dialect
        assert d is not None and (d.name, d.version) == (want.name, want.version)
        assert s.flavor == want.flavor and s.version
        assert ("MariaDB" in s.version) is (s.flavor == "mariadb")
        assert s.log_bin is True and s.log_replica_updates is True
        assert s.gtid_position is not None
        aliases = dict(d.variables)
        # a flavor's own fields are read where it has them, None elsewhere
        assert s.gtid_strict_mode is (True if "gtid_strict_mode" in aliases else None)
        assert (s.gtid_executed is None) is ("gtid_executed" not in aliases)
        assert (s.gtid_binlog_state is None) is ("gtid_binlog_state" not in aliases)
        assert (s.super_read_only is None) is (not d.has_super_read_only)
        assert s.max_connections and s.max_connections > 0
        assert s.read_ms < 1000, f"{s.name} took {s.read_ms:.1f} ms"
    assert len({s.server_id for s in topo.servers}) == 3

    db1, db2, db3 = (topo.by_name(n) for n in ("db1", "db2", "db3"))
    assert [s.name for s in topo.writable()] == ["db1"]
    assert db1.read_only is False and db1.replica is None and not db1.super_read_only
    assert db1.binlog_file and db1.binlog_pos and db1.binlog_pos > 0
    for r in (db2, db3):
        assert r.read_only is True and not r.writable
        if want.has_super_read_only:
            assert r.super_read_only is True  # the lab fences MySQL replicas with it
        assert r.replica is not None
        assert r.replica.running, r.replica.error
        assert r.replica.error is None
        assert r.replica.gtid_mode and r.replica.using_gtid in ("Slave_Pos", "Auto_Position")
        assert r.replica.source_server_id == db1.server_id
        assert r.gtid_mode is True
    assert dict(topo.sources) == {"db2": "db1", "db3": "db1"}
    assert [s.name for s in topo.replicas_of("db1")] == ["db2", "db3"]
    assert topo.replicas_of("db2") == []
    assert abs(topo.read_at - time.time()) < 60


def test_gtid_positions_equal_after_a_write(lab: Any, config: Config, probe: None) -> None:
    before = read_topology(config).by_name("db1").gtid_position
    lab.query("db1", f"INSERT INTO {PROBE_DB}.t (v) VALUES (%s)", (1,))
    topo = read_topology(config)
    db1 = topo.by_name("db1")
    assert db1.gtid_position is not None and before is not None
    assert db1.gtid_position != before and db1.gtid_position >= before  # type: ignore[operator]
    wait_caught_up(config, topo)

    topo = read_topology(config)
    db1, db2, db3 = (topo.by_name(n) for n in ("db1", "db2", "db3"))
    for r in (db2, db3):
        assert r.gtid_position == db1.gtid_position
        assert str(r.gtid_position) == lab.gtid_position(r.name)  # canonical either way
        assert r.replica is not None
        assert r.replica.received_gtid(db1.gtid_position)  # type: ignore[arg-type]
        assert (r.replica.relay_source_log_file, r.replica.exec_source_log_pos) == (
            db1.binlog_file, db1.binlog_pos)
        if r.gtid_binlog_state is not None:  # MariaDB's own variables
            assert r.gtid_current_pos == db1.gtid_binlog_pos
            assert r.gtid_slave_pos == db1.gtid_binlog_pos
            assert r.gtid_binlog_state == db1.gtid_binlog_state
            assert r.replica.gtid_io_pos == db1.gtid_binlog_pos
        d = r.dialect
        assert d is not None
        mine, theirs = (d.parse_gtid_state(str(lab.run(n, [d.gtid_state()])[0]["g"] or ""))
                        for n in (r.name, "db1"))
        assert not extra_gtids(mine, theirs)


def test_long_transaction_and_statement_are_seen(lab: Any, config: Config, probe: None) -> None:
    holder = lab.root("db1")
    sleeper = lab.root("db1")
    t: threading.Thread | None = None
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            trx_id = cur.fetchone()[0]
            cur.execute("BEGIN")
            cur.execute(f"INSERT INTO {PROBE_DB}.t (v) VALUES (2)")
        with sleeper.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            sleep_id = cur.fetchone()[0]
        t = threading.Thread(target=lambda: sleeper.cursor().execute("SELECT SLEEP(3)"))
        t.start()
        time.sleep(1.3)
        db1 = read_topology(config).by_name("db1")
        assert db1.notes == ()
        assert db1.longest_trx is not None
        assert db1.longest_trx.thread_id == trx_id and db1.longest_trx.age_s >= 1
        assert db1.longest_statement is not None
        assert db1.longest_statement.thread_id == sleep_id
        assert db1.longest_statement.age_s >= 1
        assert db1.longest_statement.command == "Query"
        # replicas: replication threads are not "client work"
        assert read_topology(config).by_name("db2").longest_statement is None
    finally:
        holder.rollback()
        holder.close()
        if t is not None:
            t.join()
        sleeper.close()


def test_unreachable_server_is_reported_not_raised(config: Config) -> None:
    port = free_port()
    ghost = ServerConfig(name="ghost", host="127.0.0.1", port=port)
    cfg = dataclasses.replace(config, servers={**config.servers, "ghost": ghost})
    t0 = time.perf_counter()
    topo = read_topology(cfg)
    assert time.perf_counter() - t0 < cfg.connect_timeout + 1
    g = topo.by_name("ghost")
    assert not g.reachable and not g.ok and not g.writable
    assert g.error is not None and g.error.startswith(f"ghost (127.0.0.1:{port}): connect failed")
    assert g.server_id is None and g.replica is None
    assert [s.name for s in topo.unreachable()] == ["ghost"]
    # the others are read as usual
    assert [s.name for s in topo.writable()] == ["db1"]
    assert dict(topo.sources) == {"db2": "db1", "db3": "db1"}


def test_wrong_password_is_reported_without_secrets(config: Config) -> None:
    wrong = "not-the-password-4711"
    cfg = dataclasses.replace(config, mysql=Credentials(config.mysql.user, Secret(wrong)))
    topo = read_topology(cfg)
    for s in topo.servers:
        assert not s.reachable
        assert s.error is not None and "[1045]" in s.error and s.name in s.error
        assert wrong not in s.error
        assert config.mysql.password.reveal() not in s.error
    assert topo.writable() == []
    assert topo.sources == {}
