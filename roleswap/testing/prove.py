"""Replication checks on open connections, in every flavor's own SQL (roleswap's dialects).

Used when a container cluster starts (:func:`prove_replication`: a write on the
primary must reach every replica through running threads) and by
:meth:`RunningCluster.wait_replicas` (:func:`wait_applied`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pymysql
from pymysql.connections import Connection

from roleswap.mysql.dialect import Dialect, Stmt, dialect_for, gtid_wait_reached, pos_wait_reached
from roleswap.mysql.replica_status import ReplicaStatus

CHECK_TABLE = "roleswap.testing_check"  # roleswap's own database: never the app's


def _rows(conn: Connection[Any], stmt: Stmt) -> list[dict[str, Any]]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(stmt[0], stmt[1] or None)
        return [dict(r) for r in cur.fetchall()]


def dialect_of(conn: Connection[Any]) -> Dialect:
    """The SQL dialect of the server behind ``conn``."""
    return dialect_for(str(_rows(conn, ("SELECT VERSION() AS v", ()))[0]["v"]))


def replica_status(conn: Connection[Any], d: Dialect) -> ReplicaStatus | None:
    """The default replication channel (None: not a replica)."""
    channels = [ReplicaStatus.from_row(r) for r in _rows(conn, d.replica_status())]
    return next((c for c in channels if c.channel == ""), channels[0] if channels else None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def wait_applied(conns: Mapping[str, Connection[Any]], primary: str, timeout: float) -> list[str]:
    """Wait until every server but ``primary`` has applied what ``primary`` has logged
    now, with both replication threads running; the problems found ([] = all good).

    A replica that replicates by GTID waits for the primary's GTID position, one that
    replicates by file/position for its binlog coordinates.  Every connection needs a
    read timeout above ``timeout``.
    """
    pd = dialect_of(conns[primary])
    gtid = str(pd.parse_gtid(_text(_rows(conns[primary], pd.gtid_position())[0]["g"])))
    st = _rows(conns[primary], pd.binlog_status())
    coords = (str(st[0]["File"]), int(st[0]["Position"])) if st else None
    deadline = time.monotonic() + timeout
    problems = []
    for name, conn in sorted(conns.items()):
        if name == primary:
            continue
        d = dialect_of(conn)
        rs = replica_status(conn, d)
        if rs is None:
            problems.append(f"{name} does not replicate")
            continue
        left = max(0.0, deadline - time.monotonic())
        if rs.using_gtid != "No":
            reached: bool | None = gtid_wait_reached(
                next(iter(_rows(conn, d.wait_for_gtid(gtid, left))[0].values())))
        elif coords is not None:
            reached = pos_wait_reached(
                next(iter(_rows(conn, d.wait_for_pos(*coords, left))[0].values())))
        else:
            reached = None
        rs = replica_status(conn, d) or rs
        if not reached or not rs.running:
            problems.append(
                f"{name} did not apply {primary}'s position within {timeout:g}s: IO {rs.io_state}, "
                f"SQL {'Yes' if rs.sql_running else 'No'} {rs.last_io_error}{rs.last_sql_error}".strip())
    return problems


def prove_replication(conns: Mapping[str, Connection[Any]], primary: str,
                      timeout: float) -> list[str]:
    """Write a row on ``primary`` (as an admin, into ``roleswap.testing_check``) and wait
    until every other server applied it; the problems found ([] = replication works)."""
    with conns[primary].cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS roleswap")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {CHECK_TABLE} "
                    "(id INT PRIMARY KEY, at DOUBLE NOT NULL)")
        cur.execute(f"REPLACE INTO {CHECK_TABLE} VALUES (1, UNIX_TIMESTAMP(NOW(6)))")
    return wait_applied(conns, primary, timeout)
