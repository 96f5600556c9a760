"""`roleswap status`: the topology as read from the servers now, plus any interrupted swap."""

from __future__ import annotations

from typing import Any

import redis

from intermission.controller import Controller
from intermission.errors import IntermissionError
from roleswap.config import Config
from roleswap.coord.endpoint import current_primary
from roleswap.mysql.topology import Server, Topology, read_topology
from roleswap.swap.context import SwapContext, SwapOptions


def server_row(s: Server, topo: Topology) -> dict[str, Any]:
    row: dict[str, Any] = {"name": s.name, "address": s.address, "reachable": s.ok}
    if not s.ok:
        row.update(role="unreachable", error=s.error)
        return row
    source = topo.source_of(s.name)
    r = s.replica
    role = "primary" if s.writable else ("replica" if r is not None else "standalone (read_only)")
    gtid = s.gtid_binlog_pos if s.is_mariadb else s.gtid_executed
    row.update(
        role=role, version=s.version, flavor=s.flavor, server_id=s.server_id,
        read_only=s.read_only, super_read_only=s.super_read_only,
        source=source if r is not None else None,
        source_address=f"{r.source_host}:{r.source_port}" if r is not None else None,
        io_running=r.io_state if r is not None else None,
        sql_running=r.sql_running if r is not None else None,
        lag_s=r.seconds_behind if r is not None else None,
        replication_error=r.error if r is not None else None,
        using_gtid=r.using_gtid if r is not None else None,
        gtid_position=str(gtid) if gtid is not None else None,
        binlog=f"{s.binlog_file}:{s.binlog_pos}" if s.binlog_file else None,
    )
    return row


def status_data(config: Config) -> dict[str, Any]:
    topo = read_topology(config)
    data: dict[str, Any] = {
        "cluster": config.cluster,
        "servers": [server_row(s, topo) for s in topo.servers],
        "writable": [s.name for s in topo.writable()],
        "redis": config.redis_url_masked,
    }
    ctx = SwapContext(config, "", "", SwapOptions())
    try:
        if ctx.redis is not None:
            try:
                data["published_primary"] = current_primary(ctx.redis, config.cluster)
                st = Controller(ctx.redis, config.scope).status()
                data["traffic"] = {
                    "scope": config.scope, "paused": st.paused,
                    "reason": st.lease.reason if st.lease else None,
                    "ttl_remaining": st.ttl_remaining,
                    "processes": len(st.processes),
                    "in_flight": sum(p.in_flight for p in st.processes),
                    "held": sum(p.held for p in st.processes),
                }
            except (redis.RedisError, IntermissionError) as e:
                data["redis_error"] = type(e).__name__
        pending = ctx.journal.interrupted()
        if pending:
            last = pending["steps"][-1] if pending["steps"] else {}
            data["interrupted_swap"] = {
                "swap_id": pending["swap_id"], "from": pending["from"], "to": pending["to"],
                "phase": pending["phase"], "last_step": last.get("name"),
                "last_status": last.get("status"),
            }
    finally:
        ctx.close()
    return data


def render_status(data: dict[str, Any]) -> str:
    lines = [f"cluster {data['cluster']}"]
    header = f"{'NAME':<8} {'ADDRESS':<21} {'ROLE':<11} {'RO':<3} {'SOURCE':<8} {'IO/SQL':<9} " \
             f"{'LAG':>4}  {'VERSION':<18} GTID / BINLOG"
    lines.append(header)
    for r in data["servers"]:
        if not r["reachable"]:
            lines.append(f"{r['name']:<8} {r['address']:<21} unreachable  {r.get('error') or ''}")
            continue
        threads = (f"{r['io_running']}/{'Yes' if r['sql_running'] else 'No'}"
                   if r["io_running"] is not None else "-")
        lag = "-" if r["lag_s"] is None else str(r["lag_s"])
        lines.append(
            f"{r['name']:<8} {r['address']:<21} {r['role']:<11} {'on' if r['read_only'] else 'off':<3} "
            f"{r['source'] or '-':<8} {threads:<9} {lag:>4}  {(r['version'] or '')[:18]:<18} "
            f"{r['gtid_position'] or r['binlog'] or '-'}")
        if r.get("replication_error"):
            lines.append(f"{'':<8} replication error: {r['replication_error']}")
    if len(data["writable"]) > 1:
        lines.append(f"WARNING: {len(data['writable'])} writable servers: {', '.join(data['writable'])}")
    pub = data.get("published_primary")
    if pub:
        lines.append(f"published primary: {pub.get('name')} ({pub.get('host')}:{pub.get('port')})")
    traffic = data.get("traffic")
    if traffic:
        state = (f"PAUSED ({traffic['reason']}, {traffic['ttl_remaining']:.1f}s left)"
                 if traffic["paused"] else "flowing")
        lines.append(f"traffic (intermission scope {traffic['scope']}): {state}; "
                     f"{traffic['processes']} app process(es), {traffic['in_flight']} in flight, "
                     f"{traffic['held']} held")
    if data.get("redis_error"):
        lines.append(f"redis {data['redis']}: unreachable ({data['redis_error']})")
    pending = data.get("interrupted_swap")
    if pending:
        lines.append(f"INTERRUPTED SWAP {pending['swap_id']}: {pending['from']} -> {pending['to']}, "
                     f"stopped at {pending['last_step']} ({pending['last_status']}); "
                     "run `roleswap recover`")
    return "\n".join(lines)
