"""Exact statements and parameters per flavor (golden strings).

The MySQL dialects cannot be run against a live server here, so these goldens
are what pins their syntax; the MariaDB ones are also exercised by the lab.
"""

from __future__ import annotations

import pymysql.converters
import pytest

from roleswap.errors import RoleSwapError
from roleswap.mysql.dialect import (
    MARIADB,
    MYSQL57,
    MYSQL80,
    MYSQL84,
    Dialect,
    UnsupportedServerError,
    dialect_for,
    gtid_wait_reached,
    parse_version,
    pos_wait_reached,
)
from roleswap.mysql.gtid import GtidSet, MariaGtidPos

PW = "s3cr'et\"pw"
U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def render(sql: str, params: tuple[object, ...]) -> str:
    """What pymysql would send (client-side interpolation), for escaping checks."""
    return sql % tuple(pymysql.converters.escape_item(p, "utf8mb4") for p in params) if params else sql


# -- version detection ---------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "name", "flavor", "v", "demote"),
    [
        ("10.11.19-MariaDB-0+deb12u1-log", "mariadb", "mariadb", (10, 11, 19), True),
        ("5.5.5-10.11.19-MariaDB-0+deb12u1", "mariadb", "mariadb", (10, 11, 19), True),
        ("10.10.2-MariaDB", "mariadb", "mariadb", (10, 10, 2), True),
        ("10.6.16-MariaDB-log", "mariadb", "mariadb", (10, 6, 16), False),
        ("10.9.8-MariaDB", "mariadb", "mariadb", (10, 9, 8), False),
        ("11.4.2-MariaDB-ubu2404", "mariadb", "mariadb", (11, 4, 2), True),
        ("5.7.44-log", "mysql57", "mysql", (5, 7, 44), False),
        ("8.0.20", "mysql80", "mysql", (8, 0, 20), False),
        ("8.0.23", "mysql80", "mysql", (8, 0, 23), False),
        ("8.0.36", "mysql80", "mysql", (8, 0, 36), False),
        ("8.0.36-28", "mysql80", "mysql", (8, 0, 36), False),  # Percona Server style
        ("8.3.0", "mysql80", "mysql", (8, 3, 0), False),
        ("8.4.2", "mysql84", "mysql", (8, 4, 2), False),
        ("9.1.0", "mysql84", "mysql", (9, 1, 0), False),
    ],
)
def test_dialect_for(
    version: str, name: str, flavor: str, v: tuple[int, int, int], demote: bool
) -> None:
    d = dialect_for(version)
    assert (d.name, d.flavor, d.version, d.can_demote_to_replica) == (name, flavor, v, demote)
    assert d.has_super_read_only is (flavor == "mysql")


@pytest.mark.parametrize(
    ("version", "remedy"),
    [
        ("10.5.22-MariaDB", "MariaDB 10.6"),
        ("10.3.39-MariaDB-0+deb10u1", "MariaDB 10.6"),
        ("5.6.51-log", "MySQL 5.7"),
        ("garbage", "supports"),
        ("", "supports"),
    ],
)
def test_dialect_for_unsupported(version: str, remedy: str) -> None:
    with pytest.raises(UnsupportedServerError) as ei:
        dialect_for(version)
    assert isinstance(ei.value, RoleSwapError)
    assert remedy in ei.value.remedy


def test_parse_version() -> None:
    assert parse_version("10.11.19-MariaDB-log") == ("mariadb", (10, 11, 19))
    assert parse_version(" 8.4.2 ") == ("mysql", (8, 4, 2))


def test_version_specific_mysql80_details() -> None:
    assert dialect_for("8.0.23").pos_wait_sql == "SELECT MASTER_POS_WAIT(%s, %s, %s)"
    assert ("log_replica_updates", "@@GLOBAL.log_slave_updates") in dialect_for("8.0.25").variables
    assert dialect_for("8.0.26").pos_wait_sql == "SELECT SOURCE_POS_WAIT(%s, %s, %s)"
    assert ("log_replica_updates", "@@GLOBAL.log_replica_updates") in dialect_for("8.0.26").variables
    old = dialect_for("8.0.20")
    assert old.stop_replica_sql == "STOP SLAVE"
    assert old.extra_source_options == ("GET_MASTER_PUBLIC_KEY=1",)


# -- fence / unfence -------------------------------------------------------------

# one statement (one round trip in the pause window): the bound, then read-only
FENCE = {
    "mariadb": [("SET SESSION lock_wait_timeout=%s, GLOBAL read_only=1", (3,))],
    "mysql57": [("SET SESSION lock_wait_timeout=%s, GLOBAL super_read_only=1", (3,))],
    # 8.0+: persisted, so a fenced/demoted server restarts read-only whatever my.cnf says
    "mysql80": [("SET SESSION lock_wait_timeout=%s, PERSIST super_read_only=1", (3,))],
    "mysql84": [("SET SESSION lock_wait_timeout=%s, PERSIST super_read_only=1", (3,))],
}
READ_ONLY = {
    "mariadb": [("SET GLOBAL read_only=1", ())],
    "mysql57": [("SET GLOBAL super_read_only=1", ())],
    "mysql80": [("SET PERSIST super_read_only=1", ())],
    "mysql84": [("SET PERSIST super_read_only=1", ())],
}
_RESET_PERSIST = [("RESET PERSIST IF EXISTS super_read_only", ()),
                  ("RESET PERSIST IF EXISTS read_only", ())]
UNFENCE = {
    "mariadb": [("SET GLOBAL read_only=0", ())],
    "mysql57": [("SET GLOBAL super_read_only=0", ()), ("SET GLOBAL read_only=0", ())],
    # writable again: the persisted read-only is removed (my.cnf rules the next start),
    # never persisted as "off"
    "mysql80": [*_RESET_PERSIST, ("SET GLOBAL super_read_only=0", ()),
                ("SET GLOBAL read_only=0", ())],
    "mysql84": [*_RESET_PERSIST, ("SET GLOBAL super_read_only=0", ()),
                ("SET GLOBAL read_only=0", ())],
}
ALL = {"mariadb": MARIADB, "mysql57": MYSQL57, "mysql80": MYSQL80, "mysql84": MYSQL84}


@pytest.mark.parametrize("name", sorted(ALL))
def test_fence_unfence(name: str) -> None:
    d = ALL[name]
    assert d.fence(3) == FENCE[name]
    assert d.unfence() == UNFENCE[name]
    assert d.read_only() == READ_ONLY[name]


@pytest.mark.parametrize("name", sorted(ALL))
def test_unfence_splits_into_writable_now_and_the_persisted_read_only_later(name: str) -> None:
    """Promotion runs writable() inside the pause window and forget_persisted_read_only()
    after the resume (a file write + fsync on MySQL 8.0+); together they are unfence()."""
    d = ALL[name]
    persisted = _RESET_PERSIST if name in ("mysql80", "mysql84") else []
    assert d.forget_persisted_read_only() == persisted
    assert d.writable() == [s for s in UNFENCE[name] if s not in _RESET_PERSIST]
    assert d.unfence() == [*d.forget_persisted_read_only(), *d.writable()]
    assert not [sql for sql, _ in d.writable() if "PERSIST" in sql]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3"])
def test_fence_rejects_bad_timeout(bad: object) -> None:
    with pytest.raises(ValueError, match="lock_wait_timeout"):
        MARIADB.fence(bad)  # type: ignore[arg-type]


# -- replication control ------------------------------------------------------------

CONTROL = {
    "mariadb": ("STOP SLAVE", "START SLAVE", "RESET SLAVE ALL", "SHOW ALL SLAVES STATUS",
                "SHOW MASTER STATUS"),
    "mysql57": ("STOP SLAVE", "START SLAVE", "RESET SLAVE ALL", "SHOW SLAVE STATUS",
                "SHOW MASTER STATUS"),
    "mysql80": ("STOP REPLICA", "START REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS",
                "SHOW MASTER STATUS"),
    "mysql84": ("STOP REPLICA", "START REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS",
                "SHOW BINARY LOG STATUS"),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_replication_control(name: str) -> None:
    d = ALL[name]
    stop, start, reset, status, binlog = CONTROL[name]
    assert d.stop_replication() == [(stop, ())]
    assert d.start_replication() == [(start, ())]
    stops = [(f"{stop} IO_THREAD", ()), (f"{stop} SQL_THREAD", ())] if name == "mariadb" else [(stop, ())]
    assert d.reset_replication() == [*stops, (reset, ())]
    assert d.stop_applier() == [(f"{stop} SQL_THREAD", ())]  # promotion: the applier only
    assert d.replica_status() == (status, ())
    assert d.binlog_status() == (binlog, ())


def test_mysql84_uses_no_removed_statement() -> None:
    texts = [
        *CONTROL["mysql84"],
        *(s for s, _ in MYSQL84.point_to_source_gtid("h", 1, "u", "p")),
        *(s for s, _ in MYSQL84.point_to_source_pos("h", 1, "u", "p", "f", 4)),
        MYSQL84.wait_for_pos("f", 4, 1)[0],
    ]
    for t in texts:
        assert "MASTER" not in t and "SLAVE" not in t, t


GTID_CHANGE = {
    "mariadb": "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
    "MASTER_PASSWORD=%s, MASTER_CONNECT_RETRY=%s, MASTER_USE_GTID=slave_pos",
    "mysql57": "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
    "MASTER_PASSWORD=%s, MASTER_CONNECT_RETRY=%s, MASTER_AUTO_POSITION=1",
    "mysql80": "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
    "SOURCE_PASSWORD=%s, SOURCE_CONNECT_RETRY=%s, SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1",
    "mysql84": "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
    "SOURCE_PASSWORD=%s, SOURCE_CONNECT_RETRY=%s, SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1",
}
POS_CHANGE = {
    "mariadb": "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
    "MASTER_PASSWORD=%s, MASTER_CONNECT_RETRY=%s, MASTER_LOG_FILE=%s, MASTER_LOG_POS=%s, "
    "MASTER_USE_GTID=no",
    "mysql57": "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
    "MASTER_PASSWORD=%s, MASTER_CONNECT_RETRY=%s, MASTER_LOG_FILE=%s, MASTER_LOG_POS=%s, "
    "MASTER_AUTO_POSITION=0",
    "mysql80": "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
    "SOURCE_PASSWORD=%s, SOURCE_CONNECT_RETRY=%s, SOURCE_LOG_FILE=%s, SOURCE_LOG_POS=%s, "
    "SOURCE_AUTO_POSITION=0, GET_SOURCE_PUBLIC_KEY=1",
    "mysql84": "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
    "SOURCE_PASSWORD=%s, SOURCE_CONNECT_RETRY=%s, SOURCE_LOG_FILE=%s, SOURCE_LOG_POS=%s, "
    "SOURCE_AUTO_POSITION=0, GET_SOURCE_PUBLIC_KEY=1",
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_point_to_source_gtid(name: str) -> None:
    stmts = ALL[name].point_to_source_gtid("db2.example", 3307, "repl", PW)
    assert stmts == [(GTID_CHANGE[name], ("db2.example", 3307, "repl", PW, 1))]


@pytest.mark.parametrize("name", sorted(ALL))
def test_point_to_source_pos(name: str) -> None:
    stmts = ALL[name].point_to_source_pos(
        "10.0.0.2", 3306, "repl", PW, "bin.000042", 1234, connect_retry=2
    )
    assert stmts == [(POS_CHANGE[name], ("10.0.0.2", 3306, "repl", PW, 2, "bin.000042", 1234))]


@pytest.mark.parametrize("name", sorted(ALL))
def test_values_are_never_in_sql_text(name: str) -> None:
    d = ALL[name]
    stmts = [
        *d.point_to_source_gtid("evil'host", 3306, "us'er", PW),
        *d.point_to_source_pos("h", 3306, "u", PW, "bin'.1", 4),
        *d.demote_to_replica("h", 3306, "u", PW),
        d.wait_for_gtid("0-1-1", 1),
        d.wait_for_pos("bin'.1", 4, 1),
    ]
    for sql, params in stmts:
        for value in ("evil", "us'er", PW, "bin'"):
            assert value not in sql
        assert sql.count("%s") == len(params)
        render(sql, params)  # interpolates cleanly
    # and the rendered text escapes quotes (pymysql does it; we pass params)
    sql, params = d.point_to_source_gtid("h", 1, "u", PW)[0]
    assert "'s3cr\\'et\\\"pw'" in render(sql, params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": "3306"}, "port"),
        ({"connect_retry": 1.5}, "connect_retry"),
    ],
)
def test_change_rejects_non_int(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"host": "h", "port": 3306, "user": "u", "password": "p"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MARIADB.point_to_source_gtid(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_pos"):
        MYSQL80.point_to_source_pos("h", 1, "u", "p", "f", "4")  # type: ignore[arg-type]


# -- demote ---------------------------------------------------------------------


def test_demote_mariadb_1010_uses_demote_to_slave() -> None:
    d = dialect_for("10.11.19-MariaDB-log")
    assert d.demote_to_replica("10.0.0.2", 3306, "repl", PW) == [
        (
            "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s,"
            " MASTER_CONNECT_RETRY=%s, MASTER_USE_GTID=slave_pos, MASTER_DEMOTE_TO_SLAVE=1",
            ("10.0.0.2", 3306, "repl", PW, 1),
        )
    ]


def test_demote_mariadb_106_copies_current_pos_first() -> None:
    d = dialect_for("10.6.16-MariaDB")
    assert d.demote_to_replica("10.0.0.2", 3306, "repl", PW) == [
        ("SET GLOBAL gtid_slave_pos=@@GLOBAL.gtid_current_pos", ()),
        (GTID_CHANGE["mariadb"], ("10.0.0.2", 3306, "repl", PW, 1)),
    ]


@pytest.mark.parametrize("name", ["mysql57", "mysql80", "mysql84"])
def test_demote_mysql_is_auto_position(name: str) -> None:
    d = ALL[name]
    assert d.demote_to_replica("h", 3306, "repl", PW, connect_retry=5) == [
        (GTID_CHANGE[name], ("h", 3306, "repl", PW, 5))
    ]


# -- waits ----------------------------------------------------------------------

WAITS = {
    "mariadb": ("SELECT MASTER_GTID_WAIT(%s, %s)", "SELECT MASTER_POS_WAIT(%s, %s, %s)"),
    "mysql57": ("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", "SELECT MASTER_POS_WAIT(%s, %s, %s)"),
    "mysql80": ("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", "SELECT SOURCE_POS_WAIT(%s, %s, %s)"),
    "mysql84": ("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", "SELECT SOURCE_POS_WAIT(%s, %s, %s)"),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_waits(name: str) -> None:
    d = ALL[name]
    gtid_sql, pos_sql = WAITS[name]
    pos: MariaGtidPos | GtidSet = (
        MariaGtidPos.parse("1-1-5,0-1-10") if d.flavor == "mariadb" else GtidSet.parse(f"{U1}:1-9")
    )
    want = "0-1-10,1-1-5" if d.flavor == "mariadb" else f"{U1}:1-9"
    assert d.wait_for_gtid(pos, 2) == (gtid_sql, (want, 2.0))
    assert d.wait_for_gtid(want, 0.5) == (gtid_sql, (want, 0.5))
    assert d.wait_for_pos("bin.000003", 4567, 10) == (pos_sql, ("bin.000003", 4567, 10.0))
    with pytest.raises(ValueError, match="timeout"):
        d.wait_for_gtid(want, -1)
    with pytest.raises(ValueError, match="log_pos"):
        d.wait_for_pos("bin.000003", "4567", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "reached"), [(0, True), (-1, False), (1, False), (None, False), ("0", True)]
)
def test_gtid_wait_reached(value: object, reached: bool) -> None:
    assert gtid_wait_reached(value) is reached


@pytest.mark.parametrize(("value", "reached"), [(0, True), (12, True), (-1, False), (None, None)])
def test_pos_wait_reached(value: object, reached: bool | None) -> None:
    assert pos_wait_reached(value) is reached


# -- variables ------------------------------------------------------------------


def test_variables_query_mariadb_golden() -> None:
    sql, params = MARIADB.variables_query()
    assert params == ()
    assert sql == (
        "SELECT @@GLOBAL.version AS version, @@GLOBAL.server_id AS server_id, "
        "@@GLOBAL.read_only AS read_only, @@GLOBAL.log_bin AS log_bin, "
        "@@GLOBAL.max_connections AS max_connections, @@GLOBAL.hostname AS hostname, "
        "@@GLOBAL.port AS port, @@GLOBAL.report_host AS report_host, "
        "@@GLOBAL.report_port AS report_port, NULL AS super_read_only, "
        "@@GLOBAL.log_slave_updates AS log_replica_updates, "
        "@@GLOBAL.gtid_strict_mode AS gtid_strict_mode, @@GLOBAL.gtid_binlog_pos AS gtid_binlog_pos, "
        "@@GLOBAL.gtid_current_pos AS gtid_current_pos, @@GLOBAL.gtid_slave_pos AS gtid_slave_pos, "
        "@@GLOBAL.gtid_binlog_state AS gtid_binlog_state"
    )
    assert "NULL AS super_read_only" in sql and "@@GLOBAL.super_read_only" not in sql


@pytest.mark.parametrize("d", [MYSQL57, MYSQL80, MYSQL84], ids=lambda d: d.name)
def test_variables_query_mysql(d: Dialect) -> None:
    sql, _ = d.variables_query()
    for expr in ("@@GLOBAL.super_read_only AS super_read_only", "@@GLOBAL.gtid_mode AS gtid_mode",
                 "@@GLOBAL.gtid_executed AS gtid_executed"):
        assert expr in sql
    assert "gtid_binlog" not in sql


def test_parse_gtid_by_flavor() -> None:
    assert MARIADB.parse_gtid("0-1-5") == MariaGtidPos.parse("0-1-5")
    assert MYSQL80.parse_gtid(f"{U1}:1-3") == GtidSet.parse(f"{U1}:1-3")
