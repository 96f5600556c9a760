"""Preflight: every reason to refuse a swap, checked before anything changes.

Preflight never writes.  Each check is one line (ok / warn / FAIL + remedy).
A single FAIL refuses the swap (exit 3).  The replication checks (filters, delay,
siblings) are in :mod:`roleswap.swap.preflight_replication`, the activity and
lock checks on --from in :mod:`roleswap.swap.preflight_locks`; the privileges
check here parses SHOW GRANTS with :mod:`roleswap.mysql.grants`.
"""

from __future__ import annotations

import redis

from intermission.errors import IntermissionError
from roleswap.coord import client as redis_client
from roleswap.coord.lock import ClusterLock
from roleswap.coord.swapstate import UnfinishedSwap, stale_lock, unfinished_swap
from roleswap.errors import RoleSwapError
from roleswap.mysql.conn import explain_unreadable
from roleswap.mysql.grants import AccountGrants, control_needs, grant_statement, missing_needs
from roleswap.mysql.topology import Server, Topology
from roleswap.swap.check import Check
from roleswap.swap.context import SwapContext
from roleswap.swap.preflight_locks import activity_checks as _activity
from roleswap.swap.preflight_replication import replication_checks as _replication
from roleswap.swap.writers import writer_checks

__all__ = ["Check", "run_preflight"]


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
            problem, remedy = explain_unreadable(srv.name, srv.address, srv.error_kind,
                                                 srv.error_code, srv.error, ctx.config.source)
            checks.append(Check.fail(f"reach {srv.name}", problem, remedy))
    if any(c.status == "fail" for c in checks):
        return checks + _privileges_denied(ctx, s, t), topo
    checks += _roles(ctx, topo, s, t)
    checks += _replication(ctx, topo, s, t)
    checks += _privileges(ctx, topo, s, t)
    checks += _activity(ctx, s)
    checks += writer_checks(ctx, topo, s)
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


def _privileges(ctx: SwapContext, topo: Topology, s: Server, t: Server) -> list[Check]:
    """The control account's global privileges (:func:`roleswap.mysql.grants.control_needs`)
    on --from, --to and every reachable sibling (repoint changes their replication too)."""
    sibs = [x for x in topo.replicas_of(s.name) if x.name not in (s.name, t.name) and x.ok]
    return [_privileges_on(ctx, srv) for srv in (s, t, *sibs)]


def _privileges_denied(ctx: SwapContext, *servers: Server) -> list[Check]:
    """The privileges check for servers that could not be read because the control
    account lacks a privilege (1227): it names what is missing and the GRANT to run."""
    return [_privileges_on(ctx, srv) for srv in servers if srv.error_code == _NEED_PRIVILEGE]


_NEED_PRIVILEGE = 1227  # ER_SPECIFIC_ACCESS_DENIED_ERROR: "you need (at least one of) the ..."


def _privileges_on(ctx: SwapContext, srv: Server) -> Check:
    """One server: parse SHOW GRANTS by scope; only grants ON *.* give global privileges.

    Plain SHOW GRANTS: on MariaDB it also lists the session's active (default) role's
    grants, which is exactly what roleswap's sessions hold."""
    name = f"privileges {srv.name}"
    try:
        account = str(ctx.query(srv.name, "SELECT CURRENT_USER() AS u")[0]["u"])
        rows = ctx.query(srv.name, "SHOW GRANTS")
        d = ctx.dialect(srv.name)
    except RoleSwapError as e:
        return Check.fail(name, f"cannot read the control account's grants on {srv.name}: "
                          f"{e.message}", e.remedy or f"check the control account on {srv.name}")
    grants = AccountGrants.parse(str(next(iter(r.values()))) for r in rows)
    missing = missing_needs(grants, control_needs(d.flavor, d.version))
    if not missing:
        return Check.ok(name, f"{account} holds every global privilege roleswap needs")
    lacking = "; ".join(f"{n.what} ({' or '.join(n.any_of)})" for n in missing)
    notes = []
    narrow = sorted({str(sc) for n in missing for p in n.any_of for sc in grants.granted_elsewhere(p)})
    if narrow:
        notes.append(f"its grants ON {', '.join(narrow)} do not count: these are global "
                     "privileges, only a grant ON *.* gives them")
    if d.show_grants_expands_roles and grants.inactive_roles():
        notes.append(f"role(s) {', '.join(grants.inactive_roles())} are granted but not active "
                     "in its sessions (no default role), so their privileges do not count")
    if not d.show_grants_expands_roles and grants.role_names():
        notes.append(f"privileges through roles ({', '.join(grants.role_names())}) are not "
                     f"checked on {srv.name} (SHOW GRANTS does not expand them): grant them "
                     "directly")
    return Check.fail(name, f"the control account {account} lacks on {srv.name}: {lacking}"
                      + (f" ({'; '.join(notes)})" if notes else ""),
                      f"on {srv.name} run: {grant_statement(missing, account)}")


def _coordination(ctx: SwapContext) -> list[Check]:
    """Redis, the journal (a swap running now vs an interrupted one), the cluster lock
    and the apps that will hold requests.  Never raises for a Redis error."""
    out = []
    url = f"{redis_client.config_key(ctx.config)} in {ctx.config.source}"
    problem = "no [redis] url configured" if ctx.redis is None else ""
    if ctx.redis is not None:
        try:
            ctx.redis.ping()
        except redis.RedisError as e:
            problem = f"Redis at {ctx.config.redis_url_masked} unreachable ({type(e).__name__})"
    if problem and ctx.opts.pause:
        out.append(Check.fail("redis", problem, f"check {url} and that Redis runs there, "
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
    pending = unfinished_swap(ctx.journal, None if problem else ctx.redis, ctx.config.cluster)
    if pending is not None and pending.running:
        out.append(Check.fail("journal", f"{pending.who()} is running now (it holds the cluster lock)",
                              "wait for it to finish (`roleswap status` shows it); do not run "
                              "`roleswap recover` while it runs"))
    elif pending is not None:
        last = pending.last_step
        at = f", stopped at {last.get('name')} ({last.get('status')})" if last else ""
        out.append(Check.fail("journal", f"{pending.who()} was interrupted{at}",
                              "run `roleswap recover` first"))
    if ctx.redis is None or problem:
        return out
    try:
        out += _lock_and_apps(ctx, pending)
    except (redis.RedisError, IntermissionError) as e:
        out.append(Check.fail("redis", f"Redis at {ctx.config.redis_url_masked} failed during "
                              f"preflight ({type(e).__name__})",
                              f"check {url} and that Redis runs there, or pass --no-pause"))
    return out


def _lock_and_apps(ctx: SwapContext, pending: UnfinishedSwap | None) -> list[Check]:
    """The cluster lock and the live apps (Redis errors propagate to _coordination)."""
    out = []
    holder = ClusterLock(ctx.redis, ctx.config.cluster, 1).holder() if ctx.redis else None
    if holder and pending is not None and holder.get("swap_id") == pending.swap_id:
        state = "running" if pending.running else "interrupted; recover takes it over"
        left = f", expires in {pending.lock_ttl_s:.0f}s" if pending.lock_ttl_s else ""
        out.append(Check.fail("lock", f"the cluster lock is held by swap {pending.swap_id} "
                              f"({state}{left})",
                              "wait for it to finish" if pending.running else
                              "run `roleswap recover` first"))
    elif holder and ctx.redis is not None and (
            stale := stale_lock(ctx.journal, ctx.redis, ctx.config.cluster)):
        out.append(Check.fail("lock", stale.describe(),
                              "run `roleswap recover`: it releases a finished swap's lock "
                              "(or wait for it to expire)"))
    elif holder:
        out.append(Check.fail("lock", f"another swap holds the cluster lock ({holder.get('swap_id')} "
                              f"on {holder.get('host')}, pid {holder.get('pid')})",
                              "wait for it to finish (it expires by itself), or run `roleswap recover`"))
    else:
        out.append(Check.ok("lock", "cluster lock is free"))
    if ctx.opts.pause and ctx.redis is not None:
        from intermission.controller import Controller

        st = Controller(ctx.redis, ctx.config.scope).status()
        if st.app_processes:
            out.append(Check.ok("apps", f"{st.describe_processes()} in intermission scope "
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
