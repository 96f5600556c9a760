"""Proof after (and during) swaps: nothing acknowledged was lost, replicas agree, and
never more than one server accepted writes.

Reads go through roleswap's control account (its unix socket when the config has one).
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql
from pymysql.connections import Connection

from roleswap.config import Config
from roleswap.demo.db import TABLE
from roleswap.mysql.conn import connect
from roleswap.mysql.dialect import Dialect, dialect_for, gtid_wait_reached
from roleswap.mysql.replica_status import ReplicaStatus


def node_conn(cfg: Config, name: str, read_timeout: float = 30.0) -> Connection[Any]:
    return connect(cfg.server(name), cfg.mysql, timeout=cfg.connect_timeout, tls=cfg.tls,
                   read_timeout=read_timeout)


def _one(conn: Connection[Any], sql: str, args: Any = None) -> dict[str, Any]:
    rows = _all(conn, sql, args)
    return rows[0] if rows else {}


def _all(conn: Connection[Any], sql: str, args: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(sql, args)
        return [dict(r) for r in cur.fetchall()]


def _dialect(conn: Connection[Any]) -> Dialect:
    """The SQL dialect of the server behind ``conn``."""
    return dialect_for(str(_one(conn, "SELECT VERSION() AS v")["v"]))


def _gtid_position(conn: Connection[Any], d: Dialect) -> str:
    """What the server has logged, as canonical text ('' when nothing)."""
    sql, params = d.gtid_position()
    raw = _one(conn, sql, params).get("g")
    return str(d.parse_gtid(raw.decode() if isinstance(raw, bytes) else raw))


@dataclass
class NodeState:
    name: str
    read_only: bool
    gtid: str
    replicating_from: str  # "host:port" or "" (a primary)
    threads_ok: bool  # IO and SQL running (replicas), True for the primary
    last_error: str
    rows: dict[int, str]
    checksum: int | None


@dataclass
class Consistency:
    primary: str | None
    nodes: list[NodeState]
    acked: int
    lost: dict[str, list[int]]  # node -> acknowledged ids missing there (or with another key)
    unacked_rows: int  # rows on the primary no client was told about (failed-but-committed)
    caught_up: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def lost_total(self) -> int:
        return max((len(v) for v in self.lost.values()), default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "primary": self.primary, "acked": self.acked, "lost": {k: len(v) for k, v in self.lost.items()},
            "unacked_rows": self.unacked_rows, "caught_up": self.caught_up, "problems": self.problems,
            "nodes": [{"name": n.name, "read_only": n.read_only, "gtid": n.gtid, "rows": len(n.rows),
                       "checksum": n.checksum, "replicating_from": n.replicating_from,
                       "threads_ok": n.threads_ok} for n in self.nodes],
        }


def _node_state(cfg: Config, name: str, conn: Connection[Any], d: Dialect) -> NodeState:
    ro = bool(int(_one(conn, "SELECT @@GLOBAL.read_only AS ro")["ro"]))
    gtid = _gtid_position(conn, d)
    channels = [ReplicaStatus.from_row(r) for r in _all(conn, *d.replica_status())]
    st = next((c for c in channels if c.channel == ""), channels[0] if channels else None)
    src = f"{st.source_host}:{st.source_port}" if st else ""
    threads_ok = st is None or st.running
    err = (st.error or "") if st else ""
    db = cfg.lab.database if cfg.lab else "app"
    rows: dict[int, str] = {}
    checksum = None
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema=%s AND table_name=%s",
                    (db, TABLE))
        exists = (cur.fetchone() or (0,))[0]
        if exists:
            cur.execute(f"SELECT id, k FROM `{db}`.{TABLE}")
            rows = {int(r[0]): str(r[1]) for r in cur.fetchall()}
            cur.execute(f"CHECKSUM TABLE `{db}`.{TABLE}")
            checksum = int((cur.fetchone() or (None, 0))[1] or 0)
    return NodeState(name, ro, gtid, src, threads_ok, err, rows, checksum)


def check_consistency(cfg: Config, acked: dict[int, str], timeout: float = 20.0) -> Consistency:
    """Wait for replicas to apply everything the primary has, then compare every node."""
    conns = {name: node_conn(cfg, name, read_timeout=timeout + 5) for name in cfg.servers}
    problems: list[str] = []
    try:
        writable = [n for n, c in conns.items() if not int(_one(c, "SELECT @@GLOBAL.read_only AS ro")["ro"])]
        primary = writable[0] if len(writable) == 1 else None
        if primary is None:
            problems.append(f"expected exactly one writable server, found {writable or 'none'}")
        dialects = {name: _dialect(c) for name, c in conns.items()}
        caught_up = True
        if primary is not None:
            pos = _gtid_position(conns[primary], dialects[primary])
            for name, c in conns.items():
                if name != primary and pos:
                    sql, params = dialects[name].wait_for_gtid(pos, timeout)
                    if not gtid_wait_reached(next(iter(_one(c, sql, params).values()), None)):
                        caught_up = False
                        problems.append(f"{name} did not reach {primary}'s GTID {pos} in {timeout:g}s")
        nodes = [_node_state(cfg, name, c, dialects[name]) for name, c in conns.items()]
    finally:
        for c in conns.values():
            with contextlib.suppress(Exception):
                c.close()
    lost = {n.name: sorted(i for i, k in acked.items() if n.rows.get(i) != k) for n in nodes}
    for name, ids in lost.items():
        if ids:
            problems.append(f"{name}: {len(ids)} acknowledged write(s) missing, e.g. id {ids[:5]}")
    sums = {n.checksum for n in nodes}
    if len(sums) != 1:
        problems.append("CHECKSUM TABLE differs: " + ", ".join(f"{n.name}={n.checksum}" for n in nodes))
    gtids = {n.gtid for n in nodes}
    if len(gtids) != 1:
        problems.append("GTID position differs: " + ", ".join(f"{n.name}={n.gtid}" for n in nodes))
    for n in nodes:
        if not n.threads_ok:
            problems.append(f"{n.name}: replication threads not running {n.last_error[:200]}")
        if n.name != primary and n.replicating_from == "":
            problems.append(f"{n.name} is neither the primary nor a replica")
    prim_rows = next((n.rows for n in nodes if n.name == primary), {})
    unacked = len(set(prim_rows) - set(acked))
    return Consistency(primary, nodes, len(acked), lost, unacked, caught_up, problems)


@dataclass
class WritableReport:
    samples: int
    rounds: int
    overlaps: int  # proven moments with two writable servers
    overlap_examples: list[str]
    max_no_writable_ms: float  # longest run of rounds in which no server was writable
    errors: int

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "rounds": self.rounds, "overlaps": self.overlaps,
                "overlap_examples": self.overlap_examples,
                "max_no_writable_ms": round(self.max_no_writable_ms, 2), "errors": self.errors}


class WritableSampler:
    """A thread reading ``@@read_only`` on every node in turn, every ``interval`` s.

    Reads are sequential on one thread, so their order is the order they happened in.
    Two servers were writable at the same moment if server Y reads writable between two
    consecutive writable readings of server X (a flip back and forth within one round,
    about a millisecond, is not assumed).
    """

    def __init__(self, cfg: Config, interval: float = 0.002) -> None:
        self.cfg = cfg
        self.interval = interval
        self.names = sorted(cfg.servers)
        self._samples: list[tuple[float, str, bool]] = []
        self._errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writable-sampler", daemon=True)

    def start(self) -> WritableSampler:
        self._conns = {n: node_conn(self.cfg, n, read_timeout=5) for n in self.names}
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.names:
                try:
                    with self._conns[name].cursor(pymysql.cursors.Cursor) as cur:
                        cur.execute("SELECT @@GLOBAL.read_only")
                        row = cur.fetchone()
                    self._samples.append((time.monotonic(), name, row is not None and int(row[0]) == 0))
                except pymysql.MySQLError:
                    self._errors += 1
                    with contextlib.suppress(Exception):
                        self._conns[name] = node_conn(self.cfg, name, read_timeout=5)
            self._stop.wait(self.interval)

    def stop(self) -> WritableReport:
        self._stop.set()
        self._thread.join(10)
        for c in self._conns.values():
            with contextlib.suppress(Exception):
                c.close()
        return self.report()

    def report(self) -> WritableReport:
        samples = list(self._samples)
        per: dict[str, tuple[list[int], list[bool]]] = {n: ([], []) for n in self.names}
        for i, (_t, name, w) in enumerate(samples):
            per[name][0].append(i)
            per[name][1].append(w)
        overlaps: list[str] = []
        for i, (t, name, w) in enumerate(samples):
            if not w:
                continue
            for other, (idx, ws) in per.items():
                if other == name:
                    continue
                k = bisect.bisect_left(idx, i)
                if 0 < k < len(idx) and ws[k - 1] and ws[k]:
                    overlaps.append(f"{name} and {other} both writable at t={t:.4f}")
        # rounds: one reading of every node
        n = len(self.names)
        rounds = [samples[j:j + n] for j in range(0, len(samples) - n + 1, n)]
        longest, run_start = 0.0, None
        for r in rounds:
            if not any(w for _t, _n, w in r):
                run_start = r[0][0] if run_start is None else run_start
                longest = max(longest, (r[-1][0] - run_start) * 1000)
            else:
                run_start = None
        return WritableReport(len(samples), len(rounds), len(overlaps), overlaps[:5], longest, self._errors)
