"""`roleswap recover` with no interrupted swap: a primary that crashed and came back
read-only.

Every server's config should set ``read_only=ON``, so a primary that restarts (a
crash, a reboot) comes back refusing writes, and nothing is writable until someone
decides.  Recover decides it the way a swap would, from what the servers say now:
the server every reachable replica follows, that is not itself a replica, and that
holds every transaction any of them has, is the primary; it is made writable again
(after confirmation) and published.  Anything else (two candidates, a replica ahead
of it, an unreachable replica that might be) changes nothing and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from roleswap.config import Config
from roleswap.coord import endpoint
from roleswap.errors import ManualInterventionError, RoleSwapError, StepError
from roleswap.mysql.topology import Topology
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.divergence import extra_transactions


@dataclass(frozen=True)
class Reopen:
    """The verdict: ``primary`` to make writable, or why not (``problem``)."""

    primary: str | None
    problem: str = ""


def find_reopen(ctx: SwapContext, topo: Topology) -> Reopen | None:
    """None when some server is writable (nothing to reopen); else the verdict."""
    if topo.writable():
        return None
    sources = {topo.source_of(s.name) for s in topo.servers if s.ok and s.replica is not None}
    if len(sources) != 1 or None in sources:
        return Reopen(None, "no server is writable and the replicas do not all follow one "
                            f"configured server (they follow: {sorted(str(x) for x in sources)})")
    prim = str(next(iter(sources)))
    p = topo.by_name(prim)
    if not p.ok:
        return Reopen(None, f"no server is writable; the replicas follow {prim}, which is "
                            f"unreachable: {p.error}")
    if p.replica is not None:
        return Reopen(None, f"{prim} is itself a replica of {p.replica.source_host}:"
                            f"{p.replica.source_port}: not reopening it")
    down = [s.name for s in topo.servers if not s.ok]
    if down:
        return Reopen(None, f"no server is writable; {', '.join(down)} cannot be read, so roleswap "
                            f"cannot tell whether {prim} holds everything they hold")
    for s in topo.servers:
        if s.name == prim:
            continue
        ahead = extra_transactions(ctx, s.name, prim)
        if ahead:
            return Reopen(None, f"{s.name} holds transactions {prim} lacks ({ahead}): {prim} "
                                "lost writes in its crash, or another server took some")
    return Reopen(prim)


def reopen_problem_error(r: Reopen) -> ManualInterventionError:
    return ManualInterventionError(
        f"recover cannot decide safely: {r.problem}; nothing was changed",
        remedy="pick the primary by hand (`roleswap status`), SET GLOBAL read_only=OFF on it "
               "and point the others at it; `roleswap status --check-health` confirms")


def reopen(config: Config, name: str, ctx: SwapContext) -> str:
    """Make ``name`` writable (it is the only candidate: checked by :func:`find_reopen`
    right before) and publish it when the endpoint method is configured."""
    try:
        ctx.run(name, ctx.dialect(name).unfence())
    except RoleSwapError as e:
        raise StepError(f"could not make {name} writable: {e.message}", remedy=e.remedy) from None
    note = f"{name} is writable again"
    if config.switch_method == "endpoint" and ctx.redis is not None:
        s = config.server(name)
        pub = None
        try:
            pub = endpoint.current_primary(ctx.redis, config.cluster)
            if not pub or pub.get("name") != name:
                endpoint.publish(ctx.redis, config.cluster, s.name, s.host, s.port, "recover")
                note += f"; published as the primary of {config.cluster!r}"
        except redis.RedisError as e:
            note += (f"; could not publish it (Redis {type(e).__name__}): apps reading the "
                     f"endpoint still see {pub.get('name') if pub else 'nothing'}")
    return note


def context(config: Config) -> SwapContext:
    return SwapContext(config, "", "", SwapOptions())
