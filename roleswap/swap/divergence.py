"""Which transactions one server has that another lacks, read fresh from both.

This is how roleswap tells a server's OWN writes from the ones it replicated:
everything a replica applied came from its source, so whatever it has that the
source lacks it originated itself (or someone wrote on it directly).  Recover and
the promote undo use it: "the target took writes" counts only these, never the
source's transactions it replicated.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from roleswap.mysql.gtid import GtidValue, extra_gtids

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext


def extra_transactions(ctx: SwapContext, have: str, lack: str) -> str | None:
    """GTIDs ``have`` holds that ``lack`` does not, as text ('' when none).

    ``None`` when it cannot be known by GTID (file/position replication).  ``have``
    is read first: if ``lack`` replicates from it, ``lack`` gets the extra moment to
    catch up, so a write in flight is not mistaken for divergence.
    """
    if ctx.state.get("mode", "gtid") != "gtid":
        return None
    return extra_gtid_text(ctx, have, lack)


# Re-reads of ``lack`` (seconds before each) before a difference counts.  MySQL sends a
# transaction to its replicas once its binlog is synced but adds it to its own
# gtid_executed only in the commit stage after that: under writes a replica can apply a
# transaction its primary does not list yet (seen in containers: one GTID of the primary's
# own, reported as errant on the replica).  A real difference persists; ~0.4 s at most,
# spent only when there is one.
SETTLE = (0.02, 0.05, 0.1, 0.2)


def extra_gtid_text(ctx: SwapContext, have: str, lack: str,
                    settle: tuple[float, ...] = SETTLE) -> str:
    """GTIDs ``have`` holds that ``lack`` does not, canonical text ('' when none), read
    ``have`` first (once) and ``lack`` after it (again after each of ``settle`` while a
    difference remains).  Each server's GTID state as its dialect reads and parses it
    (MariaDB ``gtid_binlog_state``, MySQL ``gtid_executed``), compared by
    :func:`~roleswap.mysql.gtid.extra_gtids`."""
    a = _gtid_state(ctx, have)
    extra = extra_gtids(a, _gtid_state(ctx, lack))
    for wait in settle:
        if not extra:
            break
        time.sleep(wait)
        extra = extra_gtids(a, _gtid_state(ctx, lack))
    return str(extra)


def _gtid_state(ctx: SwapContext, name: str) -> GtidValue:
    d = ctx.dialect(name)
    return d.parse_gtid_state(_text(ctx.run(name, [d.gtid_state()])[0]["g"]))


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def moved_since(ctx: SwapContext, name: str, recorded_key: str) -> bool | None:
    """File/position mode: has ``name``'s binlog position moved since ``state[recorded_key]``?
    None when nothing was recorded."""
    from roleswap.swap.positions import mode, same

    recorded = ctx.state.get(recorded_key)
    if recorded is None:
        return None
    return not same(mode(ctx).read(ctx, name), recorded)


def target_own_writes(ctx: SwapContext) -> str | None:
    """What the target wrote itself (not replicated from the source): text, '' for
    nothing, None when unknown.  Needs both servers for GTID; file/position mode
    compares the target's binlog position with the one recorded at promotion."""
    extra = extra_transactions(ctx, ctx.target, ctx.source)
    if extra is not None:
        return extra
    moved = moved_since(ctx, ctx.target, "promoted_at")
    if moved is None:
        return ""  # never promoted: it cannot have taken writes as a primary
    return "binlog position moved since promotion" if moved else ""
