"""`roleswap status`: the topology as read from the servers now, dangers, and any unfinished swap.

:func:`status_data` reads everything once (servers, Redis, journal, cluster lock);
:func:`dangers` and :func:`health_problems` judge it (pure, over that data), and
:func:`render_status` / :func:`health_summary` word it.  A *danger* is a state in
which writes may be lost or diverge (not exactly one writable server, a
replication cycle); *health problems* are everything ``status --check-health``
fails on: the dangers plus a stopped or broken replica, a server that cannot be
read, and an interrupted swap.  A swap that is running now is reported, not
counted as a problem: its transient states are expected.
"""

from __future__ import annotations

from typing import Any

import redis

from intermission.controller import Controller
from intermission.errors import IntermissionError
from roleswap.config import Config
from roleswap.coord.endpoint import current_primary
from roleswap.coord.swapstate import stale_lock, unfinished_swap
from roleswap.mysql.conn import explain_unreadable
from roleswap.mysql.dialect import MARIADB, Dialect, Stmt
from roleswap.mysql.topology import Server, Topology, read_topology
from roleswap.swap.context import SwapContext, SwapOptions

# what `roleswap status` calls a server it could not read, by Server.error_kind
_UNREAD_ROLE = {"unreachable": "unreachable", "access_denied": "access denied", "lost": "unreadable",
                "error": "unreadable"}


def server_row(s: Server, topo: Topology) -> dict[str, Any]:
    row: dict[str, Any] = {"name": s.name, "address": s.address, "reachable": s.ok}
    if not s.ok:
        row.update(role=_UNREAD_ROLE.get(s.error_kind or "error", "unreadable"), error=s.error,
                   error_kind=s.error_kind, error_code=s.error_code)
        return row
    source = topo.source_of(s.name)
    r = s.replica
    role = "primary" if s.writable else ("replica" if r is not None else "standalone (read_only)")
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
        gtid_position=str(s.gtid_position) if s.gtid_position is not None else None,
        binlog=f"{s.binlog_file}:{s.binlog_pos}" if s.binlog_file else None,
    )
    return row


def replication_cycles(sources: dict[str, str | None]) -> list[list[str]]:
    """Every cycle in "X replicates from sources[X]", each as [a, b, ...] meaning a
    replicates from b, b from the next ..., the last from a; starting at its smallest name."""
    cycles: list[list[str]] = []
    seen: set[str] = set()
    for start in sorted(sources):
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in seen and node not in path:
            path.append(node)
            node = sources.get(node)
        if node is not None and node in path:
            cycle = path[path.index(node):]
            i = cycle.index(min(cycle))
            cycles.append(cycle[i:] + cycle[:i])
        seen.update(path)
    return cycles


def _what_to_do(data: dict[str, Any], manual: str) -> str:
    if data.get("swap_in_progress"):
        return ("A swap is running now: this can be one of its brief transient states; check "
                "again once it has finished.")
    if data.get("interrupted_swap"):
        return "A swap was interrupted: run `roleswap recover`."
    return f"No swap was interrupted, so fix it by hand: {manual}."


def sql_hints(d: Dialect | None) -> dict[str, str]:
    """The statements the dangers' remedies name, as ``d`` spells them (MariaDB's when
    no server could be read)."""
    d = d or MARIADB
    def text(stmts: list[Stmt]) -> str:
        return "; ".join(sql for sql, _params in stmts)
    return {"fence": text(d.read_only()), "unfence": text(d.unfence()),
            "reset": text([*d.stop_replication(), (d.reset_replica_all_sql, ())])}


def dangers(data: dict[str, Any], hints: dict[str, str] | None = None) -> list[str]:
    """Loud one-line warnings: not exactly one writable server, replication cycles.
    ``hints``: :func:`sql_hints` of the servers' dialect."""
    sql = hints or sql_hints(None)
    out = []
    writable = data["writable"]
    unread = [r["name"] for r in data["servers"] if not r["reachable"]]
    if len(writable) > 1:
        out.append(f"DANGER: {len(writable)} writable servers: {', '.join(writable)}; writes to "
                   "them diverge. " + _what_to_do(
                       data, f"choose the real primary and {sql['fence']} on the others now"))
    elif not writable and unread:
        out.append(f"DANGER: no writable server found; {', '.join(unread)} could not be read "
                   "(see above) and may be the primary. Fix that first, then check again.")
    elif not writable:
        out.append("DANGER: no writable server; applications cannot write. " + _what_to_do(
            data, f"{sql['unfence']} on the server the others replicate from"))
    for cycle in data.get("replication_cycles", []):
        links = [f"{a} replicates from {b}" for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
        out.append("DANGER: replication cycle: " + ", ".join(links) + ". " + _what_to_do(
            data, f"on the server that should be the primary: {sql['reset']}"
                  " (then `roleswap status` again)"))
    return out


def health_problems(data: dict[str, Any]) -> list[str]:
    """Short phrases for everything `status --check-health` fails on ([] = healthy)."""
    out = []
    writable = data["writable"]
    if len(writable) != 1:
        out.append(f"{len(writable)} writable servers" + (f" ({', '.join(writable)})" if writable else ""))
    out += ["replication cycle " + " -> ".join([*c, c[0]]) for c in data.get("replication_cycles", [])]
    for r in data["servers"]:
        if not r["reachable"]:
            out.append(f"{r['name']} {r['role']}")
        elif r.get("replication_error"):
            out.append(f"{r['name']} replication broken ({r['replication_error'][:80]})")
        elif r.get("io_running") is not None and not (r["io_running"] == "Yes" and r["sql_running"]):
            out.append(f"{r['name']} replication stopped (IO {r['io_running']}, "
                       f"SQL {'Yes' if r['sql_running'] else 'No'})")
    out += haproxy_problems(data)
    pending = data.get("interrupted_swap")
    if pending:
        out.append(f"interrupted swap {pending['swap_id']} ({pending['from']}->{pending['to']})")
    rb = data.get("interrupted_runbook")
    if rb:
        out.append(f"interrupted {rb['kind']} runbook {rb['id']}")
    if data.get("journal_redis_behind"):
        out.append("the journal in Redis is behind the local copy (Redis lost writes)")
    if data.get("stale_lock"):
        out.append(f"stale cluster lock of swap {data['stale_lock']['swap_id']}")
    stale = stale_published(data)
    if stale:
        out.append(stale)
    return out


def stale_published(data: dict[str, Any]) -> str | None:
    """"published primary X is not the writable server Y" (no swap running), else None:
    the endpoint in Redis lags the servers, e.g. a Redis failover lost the publish."""
    pub = data.get("published_primary")
    writable = data["writable"]
    if not pub or len(writable) != 1 or pub.get("name") == writable[0] \
            or data.get("swap_in_progress") or data.get("interrupted_swap"):
        return None
    return f"published primary {pub.get('name')} is not the writable server {writable[0]}"


def haproxy_problems(data: dict[str, Any]) -> list[str]:
    """An HAProxy that cannot be read, or whose writes backend does not route to exactly
    the writable server (switch.method = haproxy only)."""
    out = []
    writable = sorted(data["writable"])
    for h in data.get("haproxy", []):
        if "error" in h:
            out.append(f"HAProxy {h['name']} unreadable")
            continue
        routes = sorted(v["server"] or e for e, v in h["servers"].items()
                        if e in h["ready"])
        if routes != writable:
            out.append(f"HAProxy {h['name']} routes writes to {', '.join(routes) or 'nothing'}"
                       f" (writable: {', '.join(writable) or 'none'})")
    return out


def render_haproxy(data: dict[str, Any]) -> list[str]:
    """One line per HAProxy instance: its view of the writes backend (entry -> state)."""
    lines = []
    for h in data.get("haproxy", []):
        if "error" in h:
            lines.append(f"haproxy {h['name']}: {h['error']}")
            lines.append(f"{'':<8} fix: {h['remedy']}")
            continue
        shown = []
        for e, v in h["servers"].items():
            who = "" if v["server"] in (e, None) else f" ({v['server']})"
            shown.append(f"{e}{who} {v['state']}")
        entries = ", ".join(shown)
        lines.append(f"haproxy {h['name']} ({h['api']}): backend {h['backend']}: {entries}")
    return lines


def health_summary(data: dict[str, Any]) -> str:
    """One line for monitoring: ``OK: ...`` or ``UNHEALTHY: problem; problem ...``."""
    problems = data["health"]["problems"]
    running = data.get("swap_in_progress")
    note = f"; swap {running['swap_id']} in progress" if running else ""
    if problems:
        return f"UNHEALTHY: cluster {data['cluster']}: {'; '.join(problems)}{note}"
    replicas = [r for r in data["servers"] if r.get("io_running") is not None]
    return (f"OK: cluster {data['cluster']}: {data['writable'][0]} writable, "
            f"{len(replicas)} replica(s) running{note}")


def status_data(config: Config) -> dict[str, Any]:
    """Everything `roleswap status` shows, as JSON-able data (never raises for a
    server or Redis that cannot be read: they are reported in the data)."""
    topo = read_topology(config)
    data: dict[str, Any] = {
        "cluster": config.cluster,
        "servers": [server_row(s, topo) for s in topo.servers],
        "writable": [s.name for s in topo.writable()],
        "replication_cycles": replication_cycles(dict(topo.sources)),
        "redis": config.redis_url_masked,
    }
    ctx = SwapContext(config, "", "", SwapOptions())
    try:
        client = ctx.redis
        if client is not None:
            try:
                data["published_primary"] = current_primary(client, config.cluster)
                st = Controller(client, config.scope).status()
                data["traffic"] = {
                    "scope": config.scope, "paused": st.paused,
                    "reason": st.lease.reason if st.lease else None,
                    "ttl_remaining": st.ttl_remaining,
                    "processes": st.app_processes, "host_agents": st.host_agents,
                    "in_flight": sum(p.in_flight for p in st.processes),
                    "held": sum(p.held for p in st.processes),
                }
            except (redis.RedisError, IntermissionError) as e:
                cause = e.__cause__ if isinstance(e, IntermissionError) and e.__cause__ else e
                data["redis_error"] = type(cause).__name__
                client = None
        pending = unfinished_swap(ctx.journal, client, config.cluster)
        if pending is not None:
            data["swap_in_progress" if pending.running else "interrupted_swap"] = pending.as_dict()
            data["swap_who"] = pending.who()
        if client is not None and ctx.journal.redis_behind:
            data["journal_redis_behind"] = ctx.journal.redis_behind
        if client is not None and pending is None:
            try:
                stale = stale_lock(ctx.journal, client, config.cluster)
            except redis.RedisError:
                stale = None
            if stale is not None:
                data["stale_lock"] = stale.as_dict()
                data["stale_lock_text"] = stale.describe()
        if client is not None:
            data.update(_runbook_state(client, config.cluster))
    finally:
        ctx.close()
    if config.switch_method == "haproxy":
        from roleswap.switch.haproxy import haproxy_status

        data["haproxy"] = haproxy_status(config)
    data["danger"] = dangers(data, sql_hints(next(
        (s.dialect for s in topo.servers if s.ok and s.dialect is not None), None)))
    problems = health_problems(data)
    data["health"] = {"ok": not problems, "problems": problems}
    data["health"]["summary"] = health_summary(data)
    return data


def _runbook_state(client: redis.Redis, cluster: str) -> dict[str, Any]:
    """``runbook_running`` / ``interrupted_runbook`` when a maintain/rolling runbook is open."""
    from roleswap.coord.runbook import RunbookRecord, remaining

    rb = RunbookRecord(client, cluster)
    try:
        rec = rb.load_open()
        alive = rb.alive() if rec is not None else None
    except redis.RedisError:
        return {}
    if rec is None:
        return {}
    info = {"id": rec.get("id"), "kind": rec.get("kind"), "host": rec.get("host"), "pid": rec.get("pid"),
            "remaining": [s.get("what") for s in remaining(rec)]}
    return {"runbook_running" if alive else "interrupted_runbook": info}


def render_status(data: dict[str, Any], source: str = "the config") -> str:
    """The human-readable status; ``source`` names the config file in remedies."""
    lines = [f"cluster {data['cluster']}"]
    header = f"{'NAME':<8} {'ADDRESS':<21} {'ROLE':<11} {'RO':<3} {'SOURCE':<8} {'IO/SQL':<9} " \
             f"{'LAG':>4}  {'VERSION':<18} GTID / BINLOG"
    lines.append(header)
    for r in data["servers"]:
        if not r["reachable"]:
            problem, remedy = explain_unreadable(r["name"], r["address"], r.get("error_kind"),
                                                 r.get("error_code"), r.get("error"), source)
            lines.append(f"{r['name']:<8} {r['address']:<21} {r['role']:<12} {problem}")
            lines.append(f"{'':<8} fix: {remedy}")
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
    lines += render_haproxy(data)
    lines += data.get("danger", [])
    lines += [f"WARNING: {p}: only the primary's entry should be ready (`set server "
              "<backend>/<entry> state maint|ready` on its runtime API); an HAProxy restart "
              "reloads haproxy.cfg and loses runtime changes (README: The haproxy switch method)"
              for p in haproxy_problems(data) if " routes " in p]
    pub = data.get("published_primary")
    if pub:
        lines.append(f"published primary: {pub.get('name')} ({pub.get('host')}:{pub.get('port')})")
    stale = stale_published(data)
    if stale:
        lines.append(f"WARNING: {stale}: applications that read the endpoint connect to the "
                     "wrong server (Redis lost the publish in a failover or restart?). Fix: "
                     "`roleswap recover` publishes the writable server again when this host's "
                     "journal shows roleswap made it the primary; otherwise publish it yourself")
    traffic = data.get("traffic")
    if traffic:
        state = (f"PAUSED ({traffic['reason']}, {traffic['ttl_remaining']:.1f}s left)"
                 if traffic["paused"] else "flowing")
        lines.append(f"traffic (intermission scope {traffic['scope']}): {state}; "
                     f"{traffic['processes']} app process(es)"
                     + (f" (via {traffic['host_agents']} host agent(s))" if traffic.get("host_agents")
                        else "") + f", {traffic['in_flight']} in flight, "
                     f"{traffic['held']} held")
    if data.get("redis_error"):
        key = ("[redis] sentinels/master" if str(data["redis"]).startswith("master ")
               else "[redis] url")
        lines.append(f"redis {data['redis']}: unreachable ({data['redis_error']}); "
                     f"check {key} in {source} and that Redis runs there")
    if data.get("journal_redis_behind"):
        lines.append(f"WARNING: the swap journal in Redis is behind this host's local copy: "
                     f"{data['journal_redis_behind']}. Redis lost writes roleswap had made (a "
                     "failover to a replica that lacked them, a restart without persistence) "
                     "or was unreachable when they were made; the cluster lock and the published "
                     "primary may be stale the same way. roleswap uses the local copy. Fix: run "
                     "`roleswap recover` here (it writes the local copy back to Redis and finishes "
                     "an interrupted swap), then check the published primary is the writable server")
    if data.get("stale_lock_text"):
        lines.append(f"WARNING: {data['stale_lock_text']}; it blocks every swap until it "
                     "expires. Fix: `roleswap recover` releases it")
    running = data.get("swap_in_progress")
    if running:
        lines.append(f"SWAP IN PROGRESS: {data['swap_who']}, now at {running['last_step']} "
                     f"({running['last_status']}); wait for it to finish (do not run `roleswap recover`)")
    rb = data.get("runbook_running")
    if rb:
        lines.append(f"RUNBOOK RUNNING: {rb['kind']} {rb['id']} on {rb['host']} (pid {rb['pid']}); "
                     f"next: {(rb['remaining'] or ['-'])[0]}")
    rb = data.get("interrupted_runbook")
    if rb:
        lines.append(f"INTERRUPTED RUNBOOK {rb['kind']} {rb['id']}: steps not run: "
                     f"{'; '.join(rb['remaining']) or 'none'}; run `roleswap recover`")
    pending = data.get("interrupted_swap")
    if pending:
        lines.append(f"INTERRUPTED SWAP {pending['swap_id']}: {pending['from']} -> {pending['to']}, "
                     f"stopped at {pending['last_step']} ({pending['last_status']}); "
                     "run `roleswap recover`")
    return "\n".join(lines)
