"""Making a server replicate from another, surviving broken replication metadata.

A server killed in the middle of ``CHANGE MASTER`` or ``RESET SLAVE ALL`` can come
back with replication metadata it cannot load (an empty ``master.info``, a relay-log
index naming deleted files): every later ``CHANGE MASTER`` / ``START SLAVE`` then fails
with error 1201 ("Could not initialize master info structure"; MySQL 1871/1872), and a
recover that merely retries would fail forever.  :func:`follow` forgets such a channel
(``RESET SLAVE ALL``) and points the server again.  Nothing is lost by that: in GTID
mode the position lives in ``gtid_slave_pos`` / ``gtid_executed``, not in the channel;
in file/position mode :func:`point_to` uses the coordinates the journal recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from roleswap.errors import ServerError, StepError
from roleswap.mysql.dialect import ReplicaStatus, Stmt
from roleswap.swap.positions import mode

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext

# ER_MASTER_INFO (MariaDB, MySQL 5.7), ER_REPLICA_MI_INIT_REPOSITORY, ER_REPLICA_RLI_INIT_REPOSITORY
BROKEN_METADATA = (1201, 1871, 1872)


def replica_rows(ctx: SwapContext, name: str) -> list[dict[str, Any]]:
    return ctx.run(name, [ctx.dialect(name).replica_status()])


def replication_address(ctx: SwapContext, name: str) -> tuple[str, int]:
    """(host, port) other servers use to replicate from ``name``.

    ``servers.<n>.replication_host`` / ``replication_port`` when set (a container network:
    roleswap reaches a published port, the replicas reach ``db1:3306``), else host/port.
    """
    s = ctx.server(name)
    return str(s.extra.get("replication_host", s.host)), int(s.extra.get("replication_port", s.port))


def replicates_from(ctx: SwapContext, name: str, source: str) -> tuple[bool, bool]:
    """(configured to replicate from ``source``, both threads running)."""
    want = replication_address(ctx, source)
    for row in replica_rows(ctx, name):
        r = ReplicaStatus.from_row(row)
        if (r.source_host, r.source_port) == want:
            return True, r.running
    return False, False


def point_to(ctx: SwapContext, name: str, source: str, start_at: dict[str, Any] | None) -> list[Stmt]:
    """Statements making ``name`` a replica of ``source`` (by GTID, or at ``start_at``)."""
    d = ctx.dialect(name)
    host, port = replication_address(ctx, source)
    repl = ctx.config.replication
    if mode(ctx).name == "gtid":
        return d.point_to_source_gtid(host, port, repl.user, repl.password.reveal())
    if start_at is None:
        raise StepError(f"no binlog coordinates recorded to point {name} at {source}",
                        remedy="run `roleswap recover` or repoint it by hand")
    return d.point_to_source_pos(host, port, repl.user, repl.password.reveal(),
                                 start_at["file"], int(start_at["pos"]))


def is_read_only(ctx: SwapContext, name: str) -> bool:
    """``@@read_only`` on ``name`` now (MySQL's super_read_only implies it)."""
    return bool(int(ctx.query(name, "SELECT @@GLOBAL.read_only AS ro")[0]["ro"]))


def stop_applier(ctx: SwapContext, name: str) -> None:
    """Stop ``name``'s applier (SQL thread): from here on nothing its source sends is
    applied (the promotion, inside the pause window; :func:`forget_source` follows after
    the resume)."""
    _run_or_reset(ctx, name, ctx.dialect(name).stop_applier())


def forget_source(ctx: SwapContext, name: str) -> None:
    """Stop replication on ``name`` and forget its source (after a promotion)."""
    _run_or_reset(ctx, name, ctx.dialect(name).reset_replication())


def _run_or_reset(ctx: SwapContext, name: str, stmts: list[Stmt]) -> None:
    """Run ``stmts``; with broken metadata a STOP SLAVE itself can fail with 1201, and
    then the channel is forgotten at once (RESET SLAVE ALL alone still works)."""
    try:
        ctx.run(name, stmts)
    except ServerError as e:
        if e.code not in BROKEN_METADATA:
            raise
        ctx.run(name, [(ctx.dialect(name).reset_replica_all_sql, ())])


def follow(ctx: SwapContext, name: str, source: str, stmts: Callable[[], list[Stmt]],
           *, start: bool = True) -> str:
    """Make ``name`` replicate from ``source`` (``stmts()`` points it when it does not
    already) and, with ``start``, run both threads.  Idempotent.  Returns ``""`` or a
    note that broken replication metadata had to be reset first."""
    d = ctx.dialect(name)
    repaired = ""
    for attempt in (1, 2):
        try:
            configured, running = replicates_from(ctx, name, source)
            if not configured:
                ctx.run(name, d.stop_replication())
                ctx.run(name, stmts())
            if start and not (configured and running):
                ctx.run(name, d.start_replication())
            return repaired
        except ServerError as e:
            if e.code not in BROKEN_METADATA or attempt == 2:
                raise
            try:
                ctx.run(name, d.reset_replication())
            except ServerError:
                raise StepError(f"{name}'s replication metadata is broken (error {e.code}) and "
                                f"{d.reset_replica_all_sql} failed too",
                                remedy=f"on {name}: {d.reset_replica_all_sql}, "
                                       "then run `roleswap recover` again") from e
            repaired = f" (its broken replication metadata, error {e.code}, was reset first)"
    return repaired


__all__ = ["BROKEN_METADATA", "follow", "forget_source", "is_read_only", "point_to",
           "replica_rows", "replicates_from", "replication_address"]
