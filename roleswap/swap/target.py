"""Choosing the target when none is given (``roleswap --from db1``, ``Cluster.swap("db1")``).

Only a DIRECT replica of ``source`` that could pass preflight is eligible: readable,
both threads running, no replication delay, no replication filters, the same flavor
and major version as ``source``, and not marked ``candidate = false`` in the config.
Among those: the highest ``priority`` (config, default 0), then the least lag (as
:func:`roleswap.mysql.lag.effective_lag` says), then the name.  The choice says why, and
why not each other replica.  Never writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from roleswap.config import Config
from roleswap.errors import PreflightError, UsageError
from roleswap.mysql.lag import effective_lag
from roleswap.mysql.topology import Server, Topology


@dataclass(frozen=True)
class TargetChoice:
    target: str
    reason: str
    others: tuple[tuple[str, str], ...]  # (replica, why it was not chosen)


def major(s: Server) -> str:
    """"mariadb 10.11" / "mysql 9.7" ("" when unknown)."""
    m = re.match(r"(\d+)\.(\d+)", s.version or "")
    return f"{s.flavor} {m.group(1)}.{m.group(2)}" if m else ""


def why_not(config: Config, src: Server, r: Server) -> str:
    """'' when ``r`` may be promoted in place of ``src``; else the reason it may not."""
    extra = config.server(r.name).extra
    if extra.get("candidate", True) is False:
        return "candidate = false in the config"
    if not r.ok:
        return f"cannot be read: {r.error}"
    rep = r.replica
    if rep is None or not rep.running:
        return "replication threads are not both running"
    if rep.sql_delay:
        return f"delayed replica (SQL_Delay {rep.sql_delay} s)"
    if rep.filters:
        return "replication filters: " + ", ".join(f"{c}={v}" for c, v in rep.filters)
    if major(r) != major(src):
        return f"runs {major(r) or 'an unknown version'}, {src.name} runs {major(src) or '?'}"
    return ""


def choose_target(config: Config, topo: Topology, source: str) -> TargetChoice:
    """The replica to promote in place of ``source`` (raises PreflightError if none may)."""
    if source not in config.servers:
        raise UsageError(f"--from {source!r} is not a configured server",
                         remedy=f"use one of: {', '.join(config.servers)}")
    src = topo.by_name(source)
    if not src.ok:
        raise PreflightError(f"cannot choose a target: {source} cannot be read: {src.error}",
                             remedy="fix it, or name the target with --to")
    replicas = topo.replicas_of(source)
    verdicts = [(r, why_not(config, src, r)) for r in replicas]
    eligible = [r for r, why in verdicts if not why]
    if not eligible:
        found = "; ".join(f"{r.name}: {why}" for r, why in verdicts) or "it has no direct replica"
        raise PreflightError(f"no replica of {source} can be promoted ({found})",
                             remedy="fix one of them, or name the target with --to")

    def prio(r: Server) -> int:
        return int(config.server(r.name).extra.get("priority", 0))

    def lag(r: Server) -> float:
        # 0 for one that has applied all src logged, whatever a stale Seconds_Behind says
        value = effective_lag(src, r)
        return float("inf") if value is None else value

    ranked = sorted(eligible, key=lambda r: (-prio(r), lag(r), r.name))
    best = ranked[0]
    others = [(r.name, f"priority {prio(r)}, lag {lag(r):g} s") for r in ranked[1:]]
    others += [(r.name, why) for r, why in verdicts if why]
    reason = (f"{best.name}: direct replica of {source}, priority {prio(best)}, lag {lag(best):g} s, "
              "threads running, no delay, no filters, same version")
    return TargetChoice(best.name, reason, tuple(others))
