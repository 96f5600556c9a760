"""Preflight: every reason to refuse a swap, checked before anything changes.

Preflight never writes.  Each check is one line (ok / warn / FAIL + remedy).
A single FAIL refuses the swap (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from roleswap.coord.lock import ClusterLock
from roleswap.mysql.gtid import GtidSet, MariaGtidPos, errant_mariadb
from roleswap.mysql.topology import Server, Topology
from roleswap.swap.context import SwapContext


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    message: str
    remedy: str = ""

    @classmethod
    def ok(cls, name: str, message: str) -> Check:
        return cls(name, "ok", message)

    @classmethod
    def warn(cls, name: str, message: str, remedy: str = "") -> Check:
        return cls(name, "warn", message, remedy)

    @classmethod
    def fail(cls, name: str, message: str, remedy: str) -> Check:
        return cls(name, "fail", message, remedy)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message,
                "remedy": self.remedy}


# What the control account needs, per flavor: each entry is satisfied by any of
# the listed privileges (ALL PRIVILEGES covers everything).
REQUIRED_PRIVILEGES = {
    "mariadb": (
        ("set read_only", ("READ ONLY ADMIN", "ALL PRIVILEGES")),
        ("manage replication", ("REPLICATION SLAVE ADMIN", "SUPER", "ALL PRIVILEGES")),
        ("read binlog/replica status", ("BINLOG MONITOR", "REPLICATION CLIENT", "SUPER",
                                        "ALL PRIVILEGES")),
        ("see all transactions", ("PROCESS", "ALL PRIVILEGES")),
    ),
    "mysql": (
        ("set read_only", ("SUPER", "SYSTEM_VARIABLES_ADMIN", "ALL PRIVILEGES")),
        ("manage replication", ("REPLICATION_SLAVE_ADMIN", "SUPER", "ALL PRIVILEGES")),
        ("read binlog/replica status", ("REPLICATION CLIENT", "SUPER", "ALL PRIVILEGES")),
        ("see all transactions", ("PROCESS", "ALL PRIVILEGES")),
    ),
}


def run_preflight(ctx: SwapContext) -> tuple[list[Check], Topology | None]:
    """All checks, in a stable order.  Returns the topology read (None if names are bad)."""
    src, dst = ctx.source, ctx.target
    names = set(ctx.config.servers)
    bad = [n for n in (src, dst) if n not in names]
    if bad or src == dst:
        msg = (f"unknown server(s): {', '.join(bad)}" if bad else f"--from and --to are both {src}")
        return [Check.fail("servers", msg,
                           f"choose two different servers from: {', '.join(sorted(names))}")], None
    checks: list[Check] = []
    topo = ctx.topology()
    s, t = topo.by_name(src), topo.by_name(dst)
    for srv in (s, t):
        if not srv.ok:
            checks.append(Check.fail(f"reach {srv.name}", f"{srv.name} is unreachable: {srv.error}",
                                     f"make sure {srv.name} ({srv.address}) is up and reachable"))
    if any(c.status == "fail" for c in checks):
        return checks, topo
    checks += _roles(ctx, topo, s, t)
    checks += _replication(ctx, topo, s, t)
    checks += _privileges(ctx, s, t)
    checks += _activity(ctx, s)
    checks += _coordination(ctx)
    checks += _compat(s, t)
    if ctx.switch is not None:
        checks += ctx.switch.preflight(ctx)
    return checks, topo


def _roles(ctx: SwapContext, topo: Topology, s: Server, t: Server) -> list[Check]:
    writable = [x.name for x in topo.writable()]
    out = []
    if writable == [s.name]:
        out.append(Check.ok("primary", f"{s.name} is the only writable server"))
    else:
        out.append(Check.fail("primary", f"writable servers are {writable or 'none'}; "
                              f"expected exactly {s.name}",
                              "--from must be the current primary; check `roleswap status` "
                              "(if a swap was interrupted run `roleswap recover`)"))
    if topo.source_of(t.name) == s.name:
        out.append(Check.ok("replicates", f"{t.name} replicates directly from {s.name}"))
    else:
        out.append(Check.fail("replicates", f"{t.name} replicates from "
                              f"{topo.source_of(t.name) or 'nothing'}, not from {s.name}",
                              f"--to must be a direct replica of {s.name}"))
    unreachable = [x.name for x in topo.servers if not x.ok]
    if unreachable:
        out.append(Check.warn("reach", f"unreachable: {', '.join(unreachable)} (not repointed)",
                              "repoint them by hand once they are back"))
    sibs = [x.name for x in topo.replicas_of(s.name) if x.name != t.name]
    out.append(Check.ok("siblings", f"will repoint to {t.name}: {', '.join(sibs)}" if sibs
                        else "no other replicas"))
    return out


def _replication(ctx: SwapContext, topo: Topology, s: Server, t: Server) -> list[Check]:
    out = []
    r = t.replica
    if r is None or not r.running or r.error:
        state = "not configured" if r is None else (r.error or f"IO={r.io_state} SQL={r.sql_running}")
        out.append(Check.fail("threads", f"replication on {t.name}: {state}",
                              f"fix replication on {t.name} first (START SLAVE; see its error log)"))
    else:
        out.append(Check.ok("threads", f"{t.name} IO and SQL threads running, no error"))
        lag = r.seconds_behind
        if lag is None or lag > ctx.opts.max_lag:
            out.append(Check.fail("lag", f"{t.name} is {lag if lag is not None else '?'}s behind "
                                  f"(limit {ctx.opts.max_lag:g}s)",
                                  "wait for it to catch up, or raise --max-lag"))
        else:
            out.append(Check.ok("lag", f"{t.name} is {lag}s behind (limit {ctx.opts.max_lag:g}s)"))
    for sib in topo.replicas_of(s.name):
        if sib.name != t.name and (sib.replica is None or not sib.replica.running):
            out.append(Check.warn(f"sibling {sib.name}", "replication threads are not running",
                                  f"it will be repointed to {t.name} but stay stopped"))
    errant = _errant(ctx, s, t)
    if errant:
        out.append(Check.fail("errant", f"{t.name} has transactions {s.name} never had: {errant}",
                              f"find who wrote on {t.name}; remove them or inject empty "
                              "transactions on the primary, then retry"))
    else:
        out.append(Check.ok("errant", f"no errant transactions on {t.name}"))
    if not t.log_bin or not t.log_replica_updates:
        out.append(Check.fail("binlog", f"{t.name}: log_bin={t.log_bin}, "
                              f"log_slave_updates={t.log_replica_updates}",
                              f"enable log_bin and log_slave_updates on {t.name} (restart needed)"))
    else:
        out.append(Check.ok("binlog", f"{t.name} writes a binlog including replicated events"))
    mode = "gtid" if (r is not None and r.gtid_mode) else "filepos"
    # Facts the steps need; kept in memory now, journaled when the swap begins.
    facts = ctx.journal.record.setdefault("state", {})
    facts["mode"] = mode
    facts["siblings"] = [x.name for x in topo.replicas_of(s.name) if x.name != t.name and x.ok]
    out.append(Check.ok("mode", "GTID replication" if mode == "gtid"
                        else "binlog file/position replication (no GTID auto-positioning)"))
    return out


def _errant(ctx: SwapContext, s: Server, t: Server) -> str:
    """GTIDs on the target that the source never had.

    Read here, target FIRST and source second, not from the parallel topology
    snapshot: with writes flowing, a replica read a moment after its primary
    can hold a GTID the primary's (older) snapshot lacks, a false positive.
    """
    if s.is_mariadb:
        sql = "SELECT @@GLOBAL.gtid_binlog_state AS g"
        t_state = MariaGtidPos.parse(str(ctx.query(t.name, sql)[0]["g"] or ""), state=True)
        s_state = MariaGtidPos.parse(str(ctx.query(s.name, sql)[0]["g"] or ""), state=True)
        e = errant_mariadb(t_state, s_state)
        return str(e) if e else ""
    sql = "SELECT @@GLOBAL.gtid_executed AS g"
    t_set = GtidSet.parse(str(ctx.query(t.name, sql)[0]["g"] or ""))
    s_set = GtidSet.parse(str(ctx.query(s.name, sql)[0]["g"] or ""))
    diff = t_set - s_set
    return "" if diff.is_empty() else str(diff)


def _privileges(ctx: SwapContext, *servers: Server) -> list[Check]:
    out = []
    for srv in servers:
        rows = ctx.query(srv.name, "SHOW GRANTS FOR CURRENT_USER()")
        grants = " ".join(str(v) for row in rows for v in row.values()).upper()
        flavor = "mariadb" if srv.is_mariadb else "mysql"
        missing = [what for what, any_of in REQUIRED_PRIVILEGES[flavor]
                   if not any(p in grants for p in any_of)]
        if missing:
            out.append(Check.fail(f"privileges {srv.name}",
                                  f"the control account cannot: {', '.join(missing)}",
                                  "grant it " + " / ".join(REQUIRED_PRIVILEGES[flavor][0][1][:1])
                                  + " and the replication admin privileges (see README)"))
        else:
            out.append(Check.ok(f"privileges {srv.name}", "control account has what it needs"))
    return out


def _activity(ctx: SwapContext, s: Server) -> list[Check]:
    limit = ctx.opts.long_trx
    for label, act in (("transaction", s.longest_trx), ("statement", s.longest_statement)):
        if act is not None and act.age_s > limit:
            return [Check.fail("long-trx", f"a {label} on {s.name} has run {act.age_s}s "
                               f"(thread {act.thread_id}, user {act.user}; limit {limit:g}s)",
                               "wait for it, kill it, or raise --long-trx")]
    return [Check.ok("long-trx", f"no transaction on {s.name} older than {limit:g}s")]


def _coordination(ctx: SwapContext) -> list[Check]:
    out = []
    problem = "no [redis] url configured" if ctx.redis is None else ""
    if ctx.redis is not None:
        try:
            ctx.redis.ping()
        except redis.RedisError as e:
            problem = f"Redis unreachable ({type(e).__name__})"
    if problem and ctx.opts.pause:
        out.append(Check.fail("redis", problem, "start or fix Redis (or add [redis] url), "
                              "or pass --no-pause to swap without holding traffic"))
    elif problem:
        # --no-pause: a swap must still be possible while Redis is down.  Without it
        # there is no cluster lock and the journal lives only in the local file.
        out.append(Check.warn("redis", f"{problem}: no cluster lock; journal only in "
                              f"{ctx.journal.path}",
                              "make sure no other roleswap runs against this cluster"))
        ctx.redis = None
        ctx.journal.client = None
    else:
        out.append(Check.ok("redis", "reachable"))
    pending = ctx.journal.interrupted()
    if pending:
        out.append(Check.fail("journal", f"swap {pending['swap_id']} ({pending['from']}->"
                              f"{pending['to']}) was interrupted",
                              "run `roleswap recover` first"))
    if ctx.redis is None or problem:
        return out
    holder = ClusterLock(ctx.redis, ctx.config.cluster, 1).holder()
    if holder:
        out.append(Check.fail("lock", f"another swap holds the cluster lock ({holder.get('swap_id')} "
                              f"on {holder.get('host')}, pid {holder.get('pid')})",
                              "wait for it to finish (it expires by itself), or run `roleswap recover`"))
    else:
        out.append(Check.ok("lock", "cluster lock is free"))
    if ctx.opts.pause:
        from intermission.controller import Controller

        procs = Controller(ctx.redis, ctx.config.scope).status().processes
        if procs:
            out.append(Check.ok("apps", f"{len(procs)} live intermission process(es) in scope "
                                f"{ctx.config.scope!r}"))
        else:
            out.append(Check.warn("apps", f"no live intermission process in scope "
                                  f"{ctx.config.scope!r}: nothing will hold requests",
                                  "add the middleware to your apps (see README), or ignore"))
    return out


def _compat(s: Server, t: Server) -> list[Check]:
    out = []
    sv, tv = (s.version or "").split(".")[:2], (t.version or "").split(".")[:2]
    if sv != tv:
        out.append(Check.warn("versions", f"{s.name} runs {s.version}, {t.name} runs {t.version}",
                              "replicating from newer to older major versions may break"))
    if s.max_connections != t.max_connections:
        out.append(Check.warn("max_connections", f"{s.name}: {s.max_connections}, "
                              f"{t.name}: {t.max_connections}",
                              f"set max_connections on {t.name} to at least {s.max_connections}"))
    return out
