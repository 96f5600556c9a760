"""Wire and check the lab's replication through roleswap's own SQL dialects.

Every statement here comes from :func:`roleswap.mysql.dialect.dialect_for` (chosen by
the node's ``SELECT VERSION()``), so the lab replicates exactly the way roleswap
re-points replicas during a swap: MariaDB ``CHANGE MASTER TO ... MASTER_USE_GTID=
slave_pos``; MySQL ``CHANGE REPLICATION SOURCE TO ... SOURCE_AUTO_POSITION=1,
GET_SOURCE_PUBLIC_KEY=1`` (caching_sha2_password over the replication link; the link
uses TLS, which MySQL enables by default with its auto-generated certificates).
"""

from __future__ import annotations

from typing import Any

import pymysql

from roleswap.errors import LabError
from roleswap.lab.node import Accounts, NodeSpec, root_connect
from roleswap.mysql.dialect import (
    Dialect,
    ReplicaStatus,
    Stmt,
    dialect_for,
    gtid_wait_reached,
    pos_wait_reached,
)

CONNECT_RETRY = 1  # seconds between a replica's reconnect attempts (the default is 60)


def node_dialect(cur: pymysql.cursors.Cursor) -> Dialect:
    """The dialect of the server ``cur`` is connected to."""
    cur.execute("SELECT VERSION()")
    row = cur.fetchone()
    return dialect_for(str(row[0] if row else ""))


def replica_of(cur: pymysql.cursors.Cursor, d: Dialect | None = None) -> ReplicaStatus | None:
    """The replication channel of the server ``cur`` is connected to (None: no channel),
    read with its own dialect (``d``, or asked of the server)."""
    rows = _run(cur, [(d or node_dialect(cur)).replica_status()])
    return ReplicaStatus.from_row(rows[0]) if rows else None


def _run(cur: pymysql.cursors.Cursor, stmts: list[Stmt]) -> list[dict[str, Any]]:
    """Run statements; the rows of the last one as dicts."""
    rows: list[dict[str, Any]] = []
    for sql, args in stmts:
        cur.execute(sql, args)
        cols = [d[0] for d in cur.description or ()]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()] if cols else []
    return rows


def make_writable(spec: NodeSpec) -> None:
    """Unfence the node as roleswap's promote step does (the primary, once bootstrapped).

    Its my.cnf keeps read_only (and super_read_only) on: only this run-time setting
    makes it writable, so a restart brings it back read-only.
    """
    conn = root_connect(spec)
    try:
        with conn.cursor() as cur:
            _run(cur, node_dialect(cur).unfence())
    finally:
        conn.close()


def start_replication(spec: NodeSpec, source_host: str, source_port: int, acc: Accounts) -> None:
    """Point ``spec`` at its source (by GTID, or from the source's first binlog) and start it."""
    conn = root_connect(spec)
    try:
        with conn.cursor() as cur:
            d = node_dialect(cur)
            creds = (source_host, source_port, acc.repl_user, acc.repl_password)
            if spec.gtid:
                point = d.point_to_source_gtid(*creds, connect_retry=CONNECT_RETRY)
            else:
                # a fresh source (binlogs reset by bootstrap) starts at its first binlog
                point = d.point_to_source_pos(*creds, "mysql-bin.000001", 4, connect_retry=CONNECT_RETRY)
            _run(cur, [*point, *d.start_replication()])
    finally:
        conn.close()


def prove_replication(specs: list[NodeSpec], gtid: bool, timeout: float = 30.0) -> None:
    """A write on ``specs[0]`` must be applied on every other node, whose IO and SQL
    threads must run; LabError naming the node and its replication error otherwise."""
    primary = specs[0]
    conn = root_connect(primary)
    try:
        with conn.cursor() as cur:
            d = node_dialect(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS roleswap.lab_check "
                        "(id INT PRIMARY KEY, at DOUBLE NOT NULL)")
            cur.execute("REPLACE INTO roleswap.lab_check VALUES (1, UNIX_TIMESTAMP(NOW(6)))")
            if gtid:
                pos = str(d.parse_gtid(str(_run(cur, [d.gtid_position()])[0]["g"] or "")))
            else:
                st = _run(cur, [d.binlog_status()])[0]
                file_pos = (str(st["File"]), int(st["Position"]))
    finally:
        conn.close()
    for spec in specs[1:]:
        rc = root_connect(spec)
        try:
            with rc.cursor() as cur:
                rd = node_dialect(cur)
                if gtid:
                    waited = _run(cur, [rd.wait_for_gtid(pos, timeout)])
                    reached: bool | None = gtid_wait_reached(next(iter(waited[0].values())))
                else:
                    waited = _run(cur, [rd.wait_for_pos(*file_pos, timeout)])
                    reached = pos_wait_reached(next(iter(waited[0].values())))
                st_ = replica_of(cur, rd)
        finally:
            rc.close()
        if not reached or st_ is None or st_.io_state != "Yes" or not st_.sql_running:
            detail = (f"IO={st_.io_state} SQL={'Yes' if st_.sql_running else 'No'} "
                      f"{st_.last_io_error}{st_.last_sql_error}" if st_ else "no replication channel")
            raise LabError(f"replication to {spec.name} did not work: {detail}", remedy=f"see {spec.log}")
