"""How far a replica is behind its source, from two snapshots (pure; never queries).

``Seconds_Behind_Master`` is not always the truth: just after a replica reconnects,
MariaDB reports now minus the timestamp of the source's binlog header for a moment
("14s behind" on a caught-up replica of an idle primary; 4 spurious refusals of a swap
back in ~900 lab swaps).  A replica that has applied every GTID its source had logged
is not behind, whatever that figure says.
"""

from __future__ import annotations

from roleswap.mysql.gtid import GtidSet, MariaGtidPos
from roleswap.mysql.topology import Server


def applied_all(source: Server, replica: Server) -> bool:
    """``replica`` has applied (executed, logged or not) everything ``source`` has logged;
    False when either position is unknown or empty (MySQL with gtid_mode OFF logs none:
    an empty set proves nothing) or the flavors differ."""
    want = source.gtid_position
    have = (replica.gtid_current_pos if replica.gtid_current_pos is not None
            else replica.gtid_executed)
    if want is None or want.is_empty() or not (source.gtid_mode and replica.gtid_mode):
        return False
    if isinstance(want, MariaGtidPos) and isinstance(have, MariaGtidPos):
        return have.contains(want)
    if isinstance(want, GtidSet) and isinstance(have, GtidSet):
        return want.issubset(have)
    return False


def effective_lag(source: Server, replica: Server) -> float | None:
    """Seconds ``replica`` is behind ``source``: 0 when it has applied everything
    ``source`` logged, else Seconds_Behind (None: unknown, e.g. not replicating)."""
    r = replica.replica
    lag = None if r is None or r.seconds_behind is None else float(r.seconds_behind)
    if lag is not None and lag > 0 and applied_all(source, replica):
        return 0.0
    return lag
