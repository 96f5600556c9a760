"""Preflight, replication part: can --to become the primary, and what happens to
the other replicas of --from (the siblings).

Refused (FAIL) on --to: threads stopped or erroring, lag over --max-lag, errant
GTIDs, no binlog / log_slave_updates, any replication filter (Replicate_*,
IGNORE_SERVER_IDS, MariaDB's DO/IGNORE_DOMAIN_IDS, Replicate_Rewrite_DB), a
delay (SQL_Delay > 0) and binlog filters (Binlog_Do_DB / Binlog_Ignore_DB): a
filtered --to lacks data, and as the primary its writes break the replicas
that have it (1062 duplicate key); a binlog-filtered primary starves them.

Siblings are warned about (WARN), never silently changed:

* filters: they keep filtering after the repoint;
* a delay: verify accepts them once they have RECEIVED the new primary's
  position (they apply it ``SQL_Delay`` s later);
* stopped threads: they are repointed (CHANGE MASTER) but the threads that were
  stopped stay stopped, and verify does not wait for them.

In binlog file/position mode siblings are repointed at coordinates, which only
works once they have APPLIED --from's final position during the catch-up: a
stopped or delayed sibling is refused there.

Facts for the steps go into ``ctx.journal.record["state"]`` (journaled when the
swap begins, so `roleswap recover` sees the same): ``mode``, ``siblings`` (names
to repoint) and ``stopped_siblings`` (name -> the threads that ran at preflight,
``[]`` for none: Repoint starts only those).
"""

from __future__ import annotations

from roleswap.errors import RoleSwapError
from roleswap.mysql.dialect import MARIADB
from roleswap.mysql.lag import applied_all
from roleswap.mysql.replica_status import FilterSetting, ReplicaStatus
from roleswap.mysql.topology import Server, Topology
from roleswap.swap.check import Check
from roleswap.swap.context import SwapContext
from roleswap.swap.divergence import extra_gtid_text

__all__ = ["replication_checks"]


def replication_checks(ctx: SwapContext, topo: Topology, s: Server, t: Server) -> list[Check]:
    """Every replication check, in a stable order; records the facts the steps need."""
    out = []
    r = t.replica
    if r is None or not r.running or r.error:
        state = "not configured" if r is None else (r.error or f"IO={r.io_state} SQL={r.sql_running}")
        out.append(Check.fail("threads", f"replication on {t.name}: {state}",
                              f"fix replication on {t.name} first ({_stop_start(t)[1]}; see its "
                              "error log)"))
    else:
        out.append(Check.ok("threads", f"{t.name} IO and SQL threads running, no error"))
        out.append(lag_check(s, t, r, ctx.opts.max_lag))
    out += _target_settings(s, t)
    out += _source_filters(ctx, s, t)
    mode = "gtid" if (r is not None and r.gtid_mode) else "filepos"
    sibs = [x for x in topo.replicas_of(s.name) if x.name != t.name and x.ok]
    stopped: dict[str, list[str]] = {}
    for sib in sibs:
        checks, threads = _sibling(s, t, sib, mode)
        out += checks
        if threads is not None:
            stopped[sib.name] = threads
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
    # Facts the steps need; kept in memory now, journaled when the swap begins.
    facts = ctx.journal.record.setdefault("state", {})
    facts["mode"] = mode
    facts["siblings"] = [x.name for x in sibs]
    facts["stopped_siblings"] = stopped
    out.append(Check.ok("mode", "GTID replication" if mode == "gtid"
                        else "binlog file/position replication (no GTID auto-positioning)"))
    return out


# -- --to: nothing filtered, nothing delayed ---------------------------------------------
def _flavor(srv: Server) -> str:
    """The flavor ``srv``'s filters are named in (its dialect's; MariaDB's when unread)."""
    return srv.dialect.flavor if srv.dialect is not None else "mariadb"


def _stop_start(srv: Server) -> tuple[str, str, str]:
    """(STOP ..., START ..., CHANGE ... TO) as ``srv`` spells them."""
    d = srv.dialect
    if d is None:
        return "STOP SLAVE", "START SLAVE", "CHANGE MASTER TO"
    return d.stop_replica_sql, d.start_replica_sql, d.change_source_sql


def _clear_filter(srv: Server, f: FilterSetting) -> str:
    """The statements that remove filter ``f`` on ``srv`` (no values: it is cleared)."""
    stop, start, _change = _stop_start(srv)
    clear = (srv.dialect or MARIADB).clear_filter_hint(f.setting)
    tail = "; and remove it from my.cnf" if f.is_server_filter else ""
    return f"{stop}; {clear}; {start}{tail}"


def _delay_off(srv: Server) -> str:
    stop, start, change = _stop_start(srv)
    kw = srv.dialect.kw if srv.dialect is not None else "MASTER"
    return f"{stop}; {change} {kw}_DELAY=0; {start}"


def lag_check(s: Server, t: Server, r: ReplicaStatus, max_lag: float) -> Check:
    """Is ``t`` within ``max_lag`` seconds of ``s``?  Seconds_Behind_Master says so,
    unless ``t`` has already applied every GTID ``s`` had logged when the snapshot read it:
    then it is not behind, whatever that figure says.  (Just after a replica reconnects,
    MariaDB reports now minus the timestamp of the source's binlog header for a moment:
    "14s behind" on a caught-up replica of an idle primary, refusing a swap back.)"""
    lag = r.seconds_behind
    limit = f"(limit {max_lag:g}s)"
    if lag is not None and lag <= max_lag:
        return Check.ok("lag", f"{t.name} is {lag}s behind {limit}")
    if lag is not None and applied_all(s, t):
        return Check.ok("lag", f"{t.name} has applied every transaction {s.name} has logged; "
                        f"its {lag}s Seconds_Behind is a stale event's timestamp {limit}")
    return Check.fail("lag", f"{t.name} is {lag if lag is not None else '?'}s behind {limit}",
                      "wait for it to catch up, or raise --max-lag")


def _target_settings(s: Server, t: Server) -> list[Check]:
    """--to must apply and log everything it receives, at once."""
    out = []
    r = t.replica
    filters = r.filter_settings(_flavor(t)) if r is not None else []
    if filters:
        names = ", ".join(str(f) for f in filters)
        fixes = "; ".join(dict.fromkeys(_clear_filter(t, f) for f in filters))
        out.append(Check.fail(
            "filters", f"{t.name} filters what it replicates: {names}; promoted, it would lack "
            "the filtered data, and its writes would break the replicas that have it "
            "(e.g. 1062 duplicate key)",
            f"choose a --to without replication filters, or remove them on {t.name} ({fixes}) "
            f"and re-sync the filtered data from {s.name} (e.g. pt-table-sync) before swapping"))
    if r is not None and r.sql_delay > 0:
        out.append(Check.fail(
            "delay", f"{t.name} applies with a delay (SQL_Delay={r.sql_delay}s, MASTER_DELAY): "
            "the catch-up would wait for it with requests held",
            f"choose another --to, or remove the delay on {t.name} ({_delay_off(t)}) and let it "
            "catch up first"))
    binlog = [f"{k}={v}" for k, v in (("binlog_do_db", t.binlog_do_db),
                                       ("binlog_ignore_db", t.binlog_ignore_db)) if v]
    if binlog:
        out.append(Check.fail(
            "binlog filters", f"{t.name} leaves events out of its binary log ({', '.join(binlog)}): "
            "as the primary, its replicas would never receive them",
            f"choose another --to, or remove {' and '.join(b.split('=')[0] for b in binlog)} "
            f"from {t.name}'s my.cnf and restart it"))
    if not out and r is not None:
        out.append(Check.ok("filters", f"{t.name} applies everything it receives, without delay, "
                            "and logs all of it"))
    return out


# -- siblings ---------------------------------------------------------------------------
def _source_filters(ctx: SwapContext, s: Server, t: Server) -> list[Check]:
    """Filters configured on --from (my.cnf or SET GLOBAL) apply to the channel demote gives
    it: the old primary would silently skip part of the new primary's writes."""
    sql = ctx.dialect(s.name).global_filters_sql
    if not sql:
        return []
    try:
        rows = ctx.query(s.name, sql)
    except RoleSwapError as e:
        return [Check.warn("source filters", f"cannot read {s.name}'s replication filters: "
                           f"{e.message}", "check them by hand before swapping")]
    active = [r for r in rows if str(r.get("rule") or "").strip()]
    if not active:
        return []
    found = [f"{r['name']}={r['rule']}" for r in active]
    d = ctx.dialect(s.name)
    clear = "; ".join(dict.fromkeys(d.clear_filter_hint(str(r["name"])) for r in active))
    return [Check.fail(
        "source filters", f"{s.name} has replication filters configured ({', '.join(found)}): "
        f"demoted to a replica of {t.name}, it would silently skip part of {t.name}'s writes",
        f"remove them from {s.name}'s config and clear them ({clear}) (replication filters "
        "belong on no server of a swappable pair)")]


def _threads_text(r: ReplicaStatus) -> str:
    return f"IO {r.io_state}, SQL {'Yes' if r.sql_running else 'No'}"


def _sibling(s: Server, t: Server, sib: Server,
             mode: str) -> tuple[list[Check], list[str] | None]:
    """Checks for one sibling, and the threads to restart after the repoint
    (``None``: both run, Repoint starts replication as usual)."""
    r = sib.replica
    name = f"sibling {sib.name}"
    if r is None:
        return [], None
    out = []
    threads: list[str] | None = None
    if set(r.threads) != {"io", "sql"}:
        threads = list(r.threads)
        err = f"; {r.error}" if r.error else ""
        _stop, start, _change = _stop_start(sib)
        if mode == "filepos":
            out.append(Check.fail(
                name, f"replication is stopped ({_threads_text(r)}{err}); in binlog file/position "
                f"mode a sibling is repointed at coordinates, which needs it to apply {s.name}'s "
                "final position during the catch-up",
                f"start it ({start} on {sib.name}) and let it catch up before the swap, or take it "
                "out of the config's [servers] and repoint it by hand later"))
        else:
            kept = ("no thread will be started" if not threads
                    else f"only its {' and '.join(x.upper() for x in threads)} thread is started again")
            out.append(Check.warn(
                name, f"replication is stopped ({_threads_text(r)}{err}): it will be repointed to "
                f"{t.name} ({_stop_start(sib)[2]}) but stay stopped ({kept}); verify will not wait "
                "for it",
                f"nothing if it is stopped on purpose; otherwise run {start} on {sib.name} "
                "after the swap"))
    if r.sql_delay > 0:
        if mode == "filepos":
            out.append(Check.fail(
                f"{name} delay", f"{sib.name} applies with a delay (SQL_Delay={r.sql_delay}s): in "
                f"binlog file/position mode the catch-up must wait until it has APPLIED "
                f"{s.name}'s final position, up to {r.sql_delay}s with requests held",
                f"remove the delay on {sib.name} for the swap ({_delay_off(sib)}), or use GTID "
                "replication"))
        else:
            out.append(Check.warn(
                f"{name} delay", f"{sib.name} applies with a delay (SQL_Delay={r.sql_delay}s): it "
                f"will be repointed to {t.name} keeping the delay; verify accepts it once it has "
                f"received {t.name}'s position, which it applies {r.sql_delay}s later"))
    filters = r.filter_settings(_flavor(sib))
    if filters:
        out.append(Check.warn(
            f"{name} filters", f"{sib.name} filters what it replicates "
            f"({', '.join(str(f) for f in filters)}): it keeps filtering after the repoint to "
            f"{t.name}, and it could not be promoted itself",
            "nothing if the filters are intended"))
    return out, threads


# -- errant transactions -------------------------------------------------------------------
def _errant(ctx: SwapContext, s: Server, t: Server) -> str:
    """GTIDs on the target that the source never had.

    Read here, target FIRST and source second, not from the parallel topology
    snapshot: with writes flowing, a replica read a moment after its primary
    can hold a GTID the primary's (older) snapshot lacks, a false positive.
    """
    return extra_gtid_text(ctx, t.name, s.name)
