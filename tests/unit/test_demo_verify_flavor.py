"""The demo's verification reads every server through its dialect: a MySQL replica's
state (SHOW REPLICA STATUS, gtid_executed printed with ",\\n") is read, not MariaDB SQL."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pymysql

from roleswap.demo.verify import _gtid_position, _node_state
from roleswap.mysql.dialect import MARIADB, MYSQL84

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-82db-22f2-af44-d91bb0530673"


class Cursor:
    def __init__(self, conn: Conn, dicts: bool) -> None:
        self.conn, self.dicts = conn, dicts
        self.rows: list[dict[str, Any]] = []

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *a: object) -> None:
        pass

    def execute(self, sql: str, args: Any = None) -> None:
        self.conn.log.append(sql)
        if sql not in self.conn.answers:
            raise pymysql.err.ProgrammingError(1064, f"syntax error near {sql!r}")
        self.rows = list(self.conn.answers[sql])

    def fetchall(self) -> list[Any]:
        return [r if self.dicts else tuple(r.values()) for r in self.rows]

    def fetchone(self) -> Any:
        rows = self.fetchall()
        return rows[0] if rows else None


class Conn:
    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.log: list[str] = []

    def cursor(self, cls: Any = None) -> Cursor:
        return Cursor(self, cls is pymysql.cursors.DictCursor)


TABLE_SQL = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema=%s AND table_name=%s"
CFG = cast(Any, SimpleNamespace(lab=None))


def test_mysql_replica_state_through_the_dialect() -> None:
    conn = Conn({
        "SELECT @@GLOBAL.read_only AS ro": [{"ro": 1}],
        "SELECT @@GLOBAL.gtid_executed AS g": [{"g": f"{U2}:1-3,\n{U1}:1-5"}],
        "SHOW REPLICA STATUS": [{"Channel_Name": "", "Source_Host": "127.0.0.1", "Source_Port": 3307,
                                 "Replica_IO_Running": "Yes", "Replica_SQL_Running": "Yes",
                                 "Auto_Position": 1, "Last_IO_Errno": 0, "Last_SQL_Errno": 0}],
        TABLE_SQL: [{"n": 0}],
    })
    n = _node_state(CFG, "db2", cast(Any, conn), MYSQL84)
    assert (n.read_only, n.replicating_from, n.threads_ok, n.last_error) == \
        (True, "127.0.0.1:3307", True, "")
    assert n.gtid == f"{U1}:1-5,{U2}:1-3"
    assert not any("SLAVE" in sql or "MASTER" in sql for sql in conn.log)


def test_mariadb_primary_state() -> None:
    conn = Conn({
        "SELECT @@GLOBAL.read_only AS ro": [{"ro": 0}],
        "SELECT @@GLOBAL.gtid_binlog_pos AS g": [{"g": "1-1-4,0-1-9"}],
        "SHOW ALL SLAVES STATUS": [],
        TABLE_SQL: [{"n": 0}],
    })
    n = _node_state(CFG, "db1", cast(Any, conn), MARIADB)
    assert (n.read_only, n.replicating_from, n.threads_ok, n.gtid) == (False, "", True, "0-1-9,1-1-4")
    assert _gtid_position(cast(Any, conn), MARIADB) == "0-1-9,1-1-4"
