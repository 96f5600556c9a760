"""Every flavor difference as dialect data: GTID variables by meaning, lab-repair
statements, remedy spellings; one "extra transactions" question over both GTID types;
canonical GTID text (MySQL's ",\\n" between UUID sets)."""

from __future__ import annotations

from typing import Any

import pytest

from roleswap.mysql.dialect import MARIADB, MYSQL57, MYSQL80, MYSQL84, Dialect, dialect_for
from roleswap.mysql.gtid import (
    GtidSet,
    MariaGtidPos,
    canonical_gtid_text,
    errant_mariadb,
    extra_gtids,
)
from roleswap.mysql.topology import Server, _server_from_rows

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-82db-22f2-af44-d91bb0530673"
MULTILINE = f"{U2}:1-3,\n{U1}:1-5"  # as MySQL prints gtid_executed: ",\n", its own order
CANONICAL = f"{U1}:1-5,{U2}:1-3"

ALL = {"mariadb": MARIADB, "mysql57": MYSQL57, "mysql80": MYSQL80, "mysql84": MYSQL84}

# (position, applied, state) variables per dialect
GTID_VARS = {
    "mariadb": ("gtid_binlog_pos", "gtid_current_pos", "gtid_binlog_state"),
    "mysql57": ("gtid_executed", "gtid_executed", "gtid_executed"),
    "mysql80": ("gtid_executed", "gtid_executed", "gtid_executed"),
    "mysql84": ("gtid_executed", "gtid_executed", "gtid_executed"),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_gtid_reads_by_meaning(name: str) -> None:
    d = ALL[name]
    pos, applied, state = GTID_VARS[name]
    assert d.gtid_position() == (f"SELECT @@GLOBAL.{pos} AS g", ())
    assert d.gtid_applied() == (f"SELECT @@GLOBAL.{applied} AS g", ())
    assert d.gtid_state() == (f"SELECT @@GLOBAL.{state} AS g", ())
    # the topology reads each of them under the same alias
    aliases = {alias for alias, _expr in d.variables}
    assert {pos, applied, state} <= aliases


@pytest.mark.parametrize(("name", "reset", "adopt"), [
    ("mariadb", "RESET MASTER", "SET GLOBAL gtid_slave_pos=%s"),
    ("mysql57", "RESET MASTER", "SET GLOBAL gtid_purged=%s"),
    ("mysql80", "RESET MASTER", "SET GLOBAL gtid_purged=%s"),
    ("mysql84", "RESET BINARY LOGS AND GTIDS", "SET GLOBAL gtid_purged=%s"),
])
def test_lab_repair_statements(name: str, reset: str, adopt: str) -> None:
    d = ALL[name]
    assert d.reset_binlogs() == [(reset, ())]
    assert d.adopt_gtid_position("0-1-5") == [(adopt, ("0-1-5",))]
    assert d.adopt_gtid_position(GtidSet.parse(MULTILINE)) == [(adopt, (CANONICAL,))]


def test_mysql_97_has_no_removed_statement() -> None:
    d = dialect_for("9.7.4")
    texts = [d.reset_binlogs_sql, d.binlog_status_sql, d.replica_status_sql, d.start_replica_sql,
             d.stop_replica_sql, d.reset_replica_all_sql, d.change_source_sql, d.pos_wait_sql]
    for t in texts:
        assert "MASTER" not in t and "SLAVE" not in t, t


@pytest.mark.parametrize(("name", "hint", "var", "expands"), [
    ("mariadb", "SET GLOBAL replicate_do_db=''", "read_only", True),
    ("mysql80", "CHANGE REPLICATION FILTER replicate_do_db=()", "super_read_only", False),
    ("mysql84", "CHANGE REPLICATION FILTER replicate_do_db=()", "super_read_only", False),
])
def test_remedy_spellings(name: str, hint: str, var: str, expands: bool) -> None:
    d = ALL[name]
    assert d.clear_filter_hint("replicate_do_db") == hint
    assert d.fence_var == var
    assert d.show_grants_expands_roles is expands


@pytest.mark.parametrize("d", [MYSQL57, MYSQL80, MYSQL84], ids=lambda d: d.name)
def test_mysql_gtid_values_are_canonical(d: Dialect) -> None:
    assert str(d.parse_gtid(MULTILINE)) == CANONICAL
    assert str(d.parse_gtid_state(MULTILINE)) == CANONICAL


def test_mariadb_state_parses_several_gtids_per_domain() -> None:
    assert MARIADB.parse_gtid_state("0-2-1,0-1-3") == MariaGtidPos.parse("0-1-3,0-2-1", state=True)
    with pytest.raises(ValueError):
        MARIADB.parse_gtid("0-2-1,0-1-3")  # a position holds one GTID per domain


# -- one question for both GTID types --------------------------------------------------

def test_extra_gtids_mysql_is_the_set_difference() -> None:
    have = GtidSet.parse(f"{U1}:1-7,\n{U2}:1-3")
    lack = GtidSet.parse(MULTILINE)
    assert str(extra_gtids(have, lack)) == f"{U1}:6-7"
    assert not extra_gtids(lack, have)


def test_extra_gtids_mariadb_compares_binlog_states_per_server() -> None:
    have = MariaGtidPos.parse("0-1-10,0-2-101", state=True)  # a local write on a replica
    lack = MariaGtidPos.parse("0-1-150", state=True)
    assert extra_gtids(have, lack) == errant_mariadb(have, lack) == MariaGtidPos.parse("0-2-101")
    assert not extra_gtids(lack, MariaGtidPos.parse("0-1-150,0-2-3", state=True))


def test_extra_gtids_refuses_mixed_types() -> None:
    with pytest.raises(TypeError):
        extra_gtids(GtidSet.parse(CANONICAL), MariaGtidPos.parse("0-1-1"))


@pytest.mark.parametrize(("text", "canonical"), [
    (MULTILINE, CANONICAL),
    (f"  {U1}:1-3,\n  {U1}:4-5\n", f"{U1}:1-5"),
    ("1-2-5,0-1-9", "0-1-9,1-2-5"),
    ("0-2-1,\n0-1-3", "0-1-3,0-2-1"),  # a MariaDB binlog state
    ("", ""),
    (None, ""),
    ("not a,\n gtid", "nota,gtid"),  # unparsable: kept, on one line
])
def test_canonical_gtid_text(text: str | None, canonical: str) -> None:
    assert canonical_gtid_text(text) == canonical


# -- topology: the flavor's position as one field -----------------------------------------

MYSQL_VARS: dict[str, Any] = {
    "version": "9.7.4", "server_id": 11, "read_only": 1, "super_read_only": 1, "log_bin": 1,
    "log_replica_updates": 1, "gtid_mode": "ON", "gtid_executed": MULTILINE,
    "max_connections": 500, "port": 3306, "report_host": "", "report_port": 3306,
    "hostname": "db1",
}
MARIA_VARS: dict[str, Any] = {
    "version": "10.11.19-MariaDB-log", "server_id": 2, "read_only": 1, "log_bin": 1,
    "super_read_only": None, "log_replica_updates": 1, "gtid_strict_mode": 1,
    "gtid_binlog_pos": "1-2-5,0-1-3", "gtid_current_pos": "0-1-3,1-2-5",
    "gtid_slave_pos": "0-1-3", "gtid_binlog_state": "0-2-1,0-1-3,1-2-5",
    "max_connections": 151, "port": 1, "report_host": "", "report_port": 1, "hostname": "h",
}


def _server(d: Dialect, v: dict[str, Any]) -> Server:
    return Server(name="db1", host="h", port=1, reachable=True, **_server_from_rows(d, v, [], []))


def test_server_gtid_position_mysql_is_canonical() -> None:
    s = _server(MYSQL84, MYSQL_VARS)
    assert str(s.gtid_position) == CANONICAL
    assert s.gtid_position == s.gtid_executed
    assert s.gtid_binlog_pos is None and s.gtid_strict_mode is None
    assert s.gtid_mode is True and not s.writable
    assert _server(MYSQL84, dict(MYSQL_VARS, gtid_mode="OFF")).gtid_mode is False


def test_server_gtid_position_mariadb_is_its_binlog_pos() -> None:
    s = _server(MARIADB, MARIA_VARS)
    assert str(s.gtid_position) == "0-1-3,1-2-5"
    assert s.gtid_position == s.gtid_binlog_pos
    assert s.gtid_binlog_state == MariaGtidPos.parse("0-1-3,0-2-1,1-2-5", state=True)
    assert s.gtid_strict_mode is True and s.gtid_executed is None and s.gtid_mode is True


# -- lab/test statements: filters, a server's own GTIDs -------------------------------------

@pytest.mark.parametrize(("name", "stmt"), [
    ("mariadb", ("SET GLOBAL replicate_ignore_table=%s", ("app.t,app.u",))),
    ("mysql84", ("CHANGE REPLICATION FILTER REPLICATE_IGNORE_TABLE=(`app`.`t`, `app`.`u`)", ())),
])
def test_set_filter(name: str, stmt: tuple[str, tuple[object, ...]]) -> None:
    d = ALL[name]
    setting = "replicate_ignore_table" if name == "mariadb" else "REPLICATE_IGNORE_TABLE"
    assert d.set_filter(setting, ("app.t", "app.u")) == stmt
    with pytest.raises(ValueError):
        d.set_filter(setting, ("app.t); DROP TABLE x; --",))


def test_own_gtid_prefix() -> None:
    assert MARIADB.own_gtid_prefix() == (
        "SELECT CONCAT(@@GLOBAL.gtid_domain_id, '-', @@GLOBAL.server_id, '-') AS g", ())
    assert MYSQL84.own_gtid_prefix() == ("SELECT CONCAT(@@GLOBAL.server_uuid, ':') AS g", ())
