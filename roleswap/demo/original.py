"""The 2012 mysql_role_swap sequence, re-implemented as a benchmark baseline.

Order and fixed waits as in basecamp/mysql_role_swap (see the peers notes):

1. pause traffic, then sleep 1 s (the original touched a file the app polled);
2. (remove the VIP from the primary: here the endpoint is republished in step 6);
3. ``SET GLOBAL read_only=1`` on the primary (the dialect's read-only: ``super_read_only``
   on MySQL);
4. binlog position unchanged across a 3 s sleep (else abort);
5. (print an emergency CHANGE MASTER);
6. promote the replica: ``STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0`` (each as
   the server's dialect spells it), and
   publish it (the original added the VIP and sent gratuitous ARPs);
7. unpause, then sleep 1 s;
8. ``CHANGE MASTER`` on the old primary to the new one, start it, wait until caught up.

Deviations, none inside the pause window: the old primary is repointed by GTID with
``MASTER_DEMOTE_TO_SLAVE=1`` rather than at recorded file/position coordinates (the
lab replicates by GTID), and the third server, which the original did not know
about, is repointed too so the lab stays consistent for later runs.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from pymysql.connections import Connection

from intermission.controller import Controller
from roleswap.config import Config
from roleswap.coord import endpoint
from roleswap.mysql.conn import connect, query
from roleswap.mysql.dialect import Stmt, dialect_for


@dataclass
class OriginalRun:
    source: str
    target: str
    ok: bool
    pause_ms: float  # pause sent -> resume acknowledged
    write_block_ms: float  # read_only on the old primary -> the new primary writable
    total_ms: float
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "ok": self.ok, "pause_ms": round(self.pause_ms, 1),
                "write_block_ms": round(self.write_block_ms, 1), "total_ms": round(self.total_ms, 1),
                "error": self.error}


def original_swap(cfg: Config, source: str, target: str, *, pause_sleep: float = 1.0,
                  binlog_wait: float = 3.0, unpause_sleep: float = 1.0) -> OriginalRun:
    if cfg.redis_url is None:
        raise ValueError("the original sequence needs [redis] url (pause + endpoint)")
    client = redis.Redis.from_url(cfg.redis_url.reveal(), socket_timeout=2.0)
    ctrl = Controller(client, cfg.scope)
    conns: dict[str, Connection[Any]] = {
        n: connect(cfg.server(n), cfg.mysql, timeout=cfg.connect_timeout, tls=cfg.tls, read_timeout=60)
        for n in cfg.servers
    }
    t = {"start": time.perf_counter()}
    swap_id = uuid.uuid4().hex[:12]
    handle = None
    try:
        ds = {n: dialect_for(str(query(c, "SELECT VERSION() AS v")[0]["v"])) for n, c in conns.items()}
        d = ds[target]
        handle = ctrl.pause(reason=f"original sequence {source}->{target}", ttl=60, owner="bench:original")
        t["pause"] = time.perf_counter()
        time.sleep(pause_sleep)
        _run(conns[source], ds[source].read_only())
        t["fence"] = time.perf_counter()
        before = _run(conns[source], [ds[source].binlog_status()])
        time.sleep(binlog_wait)
        after = _run(conns[source], [ds[source].binlog_status()])
        if before != after:
            _run(conns[source], ds[source].unfence())
            raise RuntimeError(f"{source}'s binlog moved during the {binlog_wait:g}s check; aborted")
        _run(conns[target], [*d.stop_replication(), (d.reset_replica_all_sql, ()), *d.unfence()])
        t["promoted"] = time.perf_counter()
        s = cfg.server(target)
        endpoint.publish(client, cfg.cluster, s.name, s.host, s.port, swap_id)
        handle.resume(payload={"primary": {"name": s.name, "host": s.host, "port": s.port},
                               "swap_id": swap_id})
        handle = None
        t["resume"] = time.perf_counter()
        time.sleep(unpause_sleep)
        repl = cfg.replication
        for name in cfg.servers:
            if name == target:
                continue
            dn = ds[name]
            stmts = dn.stop_replication()
            stmts += (dn.demote_to_replica if name == source else dn.point_to_source_gtid)(
                s.host, s.port, repl.user, repl.password.reveal())
            stmts += dn.start_replication()
            _run(conns[name], stmts)
        pos = str(d.parse_gtid(_run(conns[target], [d.gtid_position()])[0]["g"]))
        for name in cfg.servers:
            if name != target and pos:
                _run(conns[name], [ds[name].wait_for_gtid(pos, 30)])
        t["end"] = time.perf_counter()
        return OriginalRun(source, target, True, (t["resume"] - t["pause"]) * 1000,
                           (t["promoted"] - t["fence"]) * 1000, (t["end"] - t["start"]) * 1000)
    except Exception as e:
        end = time.perf_counter()
        return OriginalRun(source, target, False, (end - t.get("pause", end)) * 1000, 0.0,
                           (end - t["start"]) * 1000, f"{type(e).__name__}: {e}"[:300])
    finally:
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.resume(payload=None)
        for c in conns.values():
            with contextlib.suppress(Exception):
                c.close()


def _run(conn: Connection[Any], stmts: list[Stmt]) -> list[dict[str, Any]]:
    """Run ``stmts`` in order; the rows of the last one."""
    rows: list[dict[str, Any]] = []
    for sql, params in stmts:
        rows = query(conn, sql, params)
    return rows
