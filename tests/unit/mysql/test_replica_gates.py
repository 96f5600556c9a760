"""Replica filters/delay/received positions and the lock-holder classification (no server).

The rows are trimmed SHOW ALL SLAVES STATUS / PROCESSLIST rows as MariaDB 10.11.19
printed them on the lab; the MySQL row uses 8.0.22+ column names."""

from __future__ import annotations

from typing import Any

import pytest

from roleswap.mysql.gtid import GtidSet, MariaGtidPos
from roleswap.mysql.replica_status import ReplicaStatus
from roleswap.swap.preflight_locks import (
    Blocker,
    _from_processlist,
    _holders,
    _unattributed,
    statement_kind,
)

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"

MARIA: dict[str, Any] = {
    "Connection_name": "", "Master_Host": "127.0.0.1", "Master_Port": 40057,
    "Master_Log_File": "mysql-bin.000001", "Read_Master_Log_Pos": 791,
    "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes",
    "Replicate_Do_DB": "", "Replicate_Ignore_DB": "", "Replicate_Do_Table": "",
    "Replicate_Ignore_Table": "", "Replicate_Wild_Do_Table": "", "Replicate_Wild_Ignore_Table": "",
    "Replicate_Ignore_Server_Ids": "", "Using_Gtid": "Slave_Pos", "Gtid_IO_Pos": "0-1-10",
    "Replicate_Do_Domain_Ids": "", "Replicate_Ignore_Domain_Ids": "", "SQL_Delay": 0,
    "Replicate_Rewrite_DB": "",
}


def test_no_filters_on_a_plain_replica() -> None:
    r = ReplicaStatus.from_row(MARIA)
    assert r.filters == () and r.filter_settings("mariadb") == []
    assert r.threads == ("io", "sql")


def test_every_filter_column_is_read_and_named_per_flavor() -> None:
    row = dict(MARIA, Replicate_Ignore_Table="app.t", Replicate_Ignore_Domain_Ids="2",
               Replicate_Ignore_Server_Ids="7", Replicate_Rewrite_DB="a->b", SQL_Delay=30)
    r = ReplicaStatus.from_row(row)
    assert r.sql_delay == 30
    assert [str(f) for f in r.filter_settings("mariadb")] == [
        "replicate_ignore_table=app.t", "replicate_rewrite_db=a->b", "IGNORE_SERVER_IDS=7",
        "IGNORE_DOMAIN_IDS=2"]
    mysql = ReplicaStatus.from_row({"Source_Host": "h", "Replica_IO_Running": "Yes",
                                    "Replica_SQL_Running": "Yes", "Replicate_Wild_Do_Table": "app.%"})
    assert [str(f) for f in mysql.filter_settings("mysql")] == ["REPLICATE_WILD_DO_TABLE=app.%"]
    assert mysql.filter_settings("mysql")[0].is_variable is False
    assert r.filter_settings("mariadb")[0].is_variable is True


@pytest.mark.parametrize(("io", "sql", "threads"), [
    ("Yes", "Yes", ("io", "sql")), ("Connecting", "Yes", ("io", "sql")),
    ("Yes", "No", ("io",)), ("No", "Yes", ("sql",)), ("No", "No", ()),
])
def test_threads(io: str, sql: str, threads: tuple[str, ...]) -> None:
    r = ReplicaStatus.from_row(dict(MARIA, Slave_IO_Running=io, Slave_SQL_Running=sql))
    assert r.threads == threads


def test_received_gtid_mariadb_and_mysql() -> None:
    r = ReplicaStatus.from_row(MARIA)
    assert r.received_gtid(MariaGtidPos.parse("0-2-10"))
    assert not r.received_gtid(MariaGtidPos.parse("0-2-11"))
    assert not r.received_gtid(MariaGtidPos.parse("0-1-5,1-3-1"))  # domain 1 never seen
    m = ReplicaStatus.from_row({"Source_Host": "h", "Retrieved_Gtid_Set": f"{U1}:90-120",
                                "Executed_Gtid_Set": f"{U1}:1-95"})
    assert m.received_gtid(GtidSet.parse(f"{U1}:1-120"))
    assert not m.received_gtid(GtidSet.parse(f"{U1}:1-121"))


def test_received_file_pos_orders_files_by_number() -> None:
    r = ReplicaStatus.from_row(dict(MARIA, Master_Log_File="bin.1000000", Read_Master_Log_Pos=4))
    assert r.received_file_pos("bin.999999", 9000)
    assert r.received_file_pos("bin.1000000", 4)
    assert not r.received_file_pos("bin.1000000", 5)


@pytest.mark.parametrize(("info", "kind"), [
    ("ALTER TABLE app.t ADD COLUMN secret INT DEFAULT 4242", "ALTER TABLE app.t"),
    ("/* pt-osc */ alter online table `app`.`t``x` add index (a)", "ALTER TABLE app.t`x"),
    ("CREATE UNIQUE INDEX ix ON app.t (email)", "CREATE INDEX ON app.t"),
    ("DROP INDEX IF EXISTS ix ON t", "DROP INDEX ON t"),
    ("OPTIMIZE NO_WRITE_TO_BINLOG TABLE app.big", "OPTIMIZE TABLE app.big"),
    ("TRUNCATE app.t", "TRUNCATE TABLE app.t"),
    ("RENAME TABLE a TO b", "RENAME TABLE a"),
    ("INSERT INTO app.users (email) VALUES ('someone@example.com')", "INSERT INTO app.users"),
    ("UPDATE app.users SET email='x@y' WHERE id=1", "UPDATE app.users"),
    ("DELETE FROM users WHERE name='Bob'", "DELETE FROM users"),
    ("SELECT 'secret' FROM dual", "SELECT"),
    ("LOCK TABLES app.t WRITE", "LOCK TABLES"),
    ("'weird", "?"), (None, "?"),
])
def test_statement_kind_never_shows_values(info: str | None, kind: str) -> None:
    assert statement_kind(info) == kind


def row(id_: int, command: str, state: str, info: str | None, age: int = 3,
        user: str = "app") -> dict[str, Any]:
    return {"id": id_, "user": user, "command": command, "age": age, "state": state, "info": info}


def test_processlist_classification() -> None:
    rows = [
        row(1, "Query", "copy to tmp table", "ALTER TABLE app.t ENGINE=InnoDB", 12),
        row(2, "Query", "Waiting for table metadata lock", "INSERT INTO app.t VALUES (1)"),
        row(3, "Query", "Sending data", "SELECT * FROM app.t"),  # not a blocker
        row(4, "Sleep", "", None, 100),  # idle: not named from the process list
        row(5, "Query", "Waiting for global read lock", "UPDATE app.t SET a=1"),
    ]
    got = _from_processlist(rows)
    assert [str(b) for b in got] == [
        "thread 1 (user app): ALTER TABLE app.t running (12s)",
        "thread 2 (user app): INSERT INTO app.t waiting for table metadata lock (3s)",
        "thread 5 (user app): UPDATE app.t waiting for global read lock (3s)",
    ]


def test_lock_holders_from_instrumentation() -> None:
    sessions = {4: row(4, "Sleep", "", None, 100), 1: row(1, "Query", "", "ALTER TABLE app.t")}
    rows = [{"id": 4, "db": "app", "tbl": "t", "ms": 5500}, {"id": 4, "db": "app", "tbl": "u", "ms": 5500},
            {"id": 1, "db": "app", "tbl": "t", "ms": 10}, {"id": 0, "db": "app", "tbl": "v", "ms": None}]
    got = _holders(rows, sessions, reported={1})
    assert got == [Blocker(4, "app", "LOCK TABLES ... WRITE on app.t, app.u", "held", 5)]


def test_unattributed_tables_need_two_reads_and_no_statement_naming_them() -> None:
    first = [{"Database": "app", "Table": "locked"}, {"Database": "app", "Table": "busy"},
             {"Database": "app", "Table": "gone"}]
    second = [{"Database": "app", "Table": "locked"}, {"Database": "app", "Table": "busy"}]
    sessions = [row(9, "Query", "Update", "INSERT INTO `busy` (n) VALUES (1)"),
                row(8, "Query", "", "ALTER TABLE app.other ADD COLUMN locked INT")]
    got = _unattributed(first, second, sessions)
    assert [str(b) for b in got] == [
        "a session running no statement: holds app.locked (probably LOCK TABLES)"]
