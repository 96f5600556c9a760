"""Preflight: can anything write on ``--from`` after the fence?

A write that gets through the fence after the final position was captured would
be missing on the new primary: an acknowledged write lost.  Three ways exist:

* sessions of accounts that bypass ``read_only`` (MariaDB READ ONLY ADMIN, directly
  or through a role; MySQL's ``super_read_only`` stops them all);
* scheduled events whose definer bypasses it (the event scheduler runs them as
  the definer);
* replication INTO ``--from`` (its SQL thread always writes through read_only).

Default: refuse, naming the sessions.  ``--kill-privileged`` kills the sessions
right after the fence instead (as MariaDB MaxScale's switchover does).  Whatever
gets through anyway is caught by the ``fence-check`` step, which rolls the swap
back before the point of no return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pymysql

from roleswap.errors import RoleSwapError
from roleswap.mysql import sessions as msess

if TYPE_CHECKING:
    from roleswap.mysql.topology import Server, Topology
    from roleswap.swap.check import Check
    from roleswap.swap.context import SwapContext

MAX_LISTED = 8
# accounts that exist on every server and are expected to hold every privilege
_ALWAYS_PRIVILEGED = ("root", "mariadb.sys")


def writer_checks(ctx: SwapContext, topo: Topology, s: Server) -> list[Check]:
    from roleswap.swap.check import Check

    out: list[Check] = []
    upstream = topo.source_of(s.name) or (s.replica.source_host if s.replica else None)
    if s.replica is not None and (s.replica.io_running or s.replica.sql_running):
        out.append(Check.fail(
            "upstream", f"{s.name} itself replicates from {upstream}:{s.replica.source_port}; "
            "its SQL thread writes through read_only, so the fence cannot hold",
            f"stop that replication on {s.name} first (STOP SLAVE / STOP REPLICA), or swap the "
            "upstream server instead"))
    d = ctx.dialect(s.name)
    if not d.fence_bypass_privileges:
        kill = ("; --kill-privileged has nothing to kill" if ctx.opts.kill_privileged else "")
        out.append(Check.ok("fence", f"{d.fence_var} on {s.name} stops every account{kill}"))
        return out
    try:
        conn = ctx.conn(s.name)
        found, users = msess.fence_bypassing_sessions(conn, d, ctx.config.mysql.user)
        events = [e for e in msess.enabled_events(conn) if e.definer_user in users]
    except (pymysql.MySQLError, RoleSwapError) as e:
        return [*out, Check.fail("fence", f"cannot list who can write through read_only on "
                                 f"{s.name}: {e}",
                                 "grant the control account SELECT and PROCESS on *.* (see README)")]
    privs = " / ".join(d.fence_bypass_privileges)
    if found:
        accounts = sorted({x.user for x in found})
        listed = ", ".join(str(x) for x in found[:MAX_LISTED])
        more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
        what = (f"{len(found)} session(s) on {s.name} can write through read_only "
                f"(account(s) {', '.join(accounts)} hold {privs}): {listed}{more}")
        if ctx.opts.kill_privileged:
            out.append(Check.warn("fence", what + "; they will be killed right after the fence",
                                  "their open transactions roll back; clients must reconnect"))
        else:
            out.append(Check.fail(
                "fence", what,
                f"disconnect them, or revoke {privs} from application accounts (only the control "
                "account needs it), or pass --kill-privileged to kill them right after the fence"))
    else:
        out.append(Check.ok("fence", f"no session on {s.name} can write through read_only"))
    if events:
        names = ", ".join(f"{e.schema}.{e.name} (definer {e.definer})" for e in events[:MAX_LISTED])
        out.append(Check.fail(
            "events", f"enabled events on {s.name} run as accounts that bypass read_only: {names}",
            f"disable them for the swap (ALTER EVENT ... DISABLE, or SET GLOBAL event_scheduler=OFF "
            f"on {s.name}), or change their DEFINER"))
    idle = sorted(u for u in users if u not in {x.user for x in found}
                  and u != ctx.config.mysql.user and u not in _ALWAYS_PRIVILEGED)
    if idle:
        out.append(Check.warn(
            "fence accounts", f"account(s) {', '.join(idle)} on {s.name} could write through "
            "read_only if they connect during the swap (no session now)",
            "revoke the privilege from application accounts; if one writes anyway, the fence-check "
            "step rolls the swap back"))
    return out
