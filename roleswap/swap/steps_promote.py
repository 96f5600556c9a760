"""Promotion in two steps: ``promote`` inside the pause window, ``detach`` after it.

What makes the target safe to write is that it applies nothing more from the old
primary and is writable only after the fence and the catch-up: ``promote`` stops the
target's applier (the SQL thread) and lifts read-only -- nothing else.  The rest is the
server's bookkeeping and is done by ``detach`` right after the resume: stop the IO
thread, ``RESET SLAVE ALL`` (and on MySQL drop a persisted read-only).  Measured per
statement on the lab (idle swaps, p50): MySQL 9.7 ``STOP REPLICA`` 6-8 ms of which the
SQL thread is 1.5-1.8 ms, ``RESET REPLICA ALL`` 6.7 ms (up to 29), ``RESET PERSIST``
1.2 ms; MariaDB 10.11 the IO thread 1.25 ms, ``RESET SLAVE ALL`` 1.2 ms.  None of that
guards a write, so none of it waits inside the window.

Between the two, the new primary still has its channel to the old one, its IO thread
copying into the relay log anything a write through the fence would send (nothing is
applied: the SQL thread is stopped).  A crash there is finished by ``recover`` (the
point of no return is passed): it runs ``promote`` (idempotent), then ``detach``, then
``demote`` -- never a demotion while the new primary still points at the old one.
"""

from __future__ import annotations

from roleswap.errors import StepError
from roleswap.swap.context import SwapContext
from roleswap.swap.positions import read_file_pos as _read_file_pos
from roleswap.swap.replica_ops import follow, forget_source, is_read_only, point_to, stop_applier
from roleswap.swap.step import Step


class Promote(Step):
    """Stop the target's applier and make it writable (its channel is reset by Detach)."""

    name = "promote"

    def title(self, ctx: SwapContext) -> str:
        return f"promote {ctx.target}: stop applying from {ctx.source}, read_only off"

    def apply(self, ctx: SwapContext) -> str:
        d = ctx.dialect(ctx.target)
        stop_applier(ctx, ctx.target)
        # The new primary's coordinates before its first write: where file/pos replicas
        # start.  Recorded once: a re-run (recover) after the target took writes must not
        # move it past them.
        if "promoted_at" not in ctx.state:
            ctx.remember(promoted_at=_read_file_pos(ctx, ctx.target))
        ctx.run(ctx.target, d.writable())
        return f"{ctx.target} writable"

    def undo(self, ctx: SwapContext) -> str:
        """Back to a read-only replica of the source -- unless it took writes of its own
        (rolling back would lose them: recover finishes the swap instead)."""
        from roleswap.swap.divergence import target_own_writes

        if "promote" not in ctx.journal.last_status():
            return f"{ctx.target} was never promoted"
        d = ctx.dialect(ctx.target)
        # read_only FIRST, then look: checked before, a write landing between the check
        # and read_only would be stranded on the target (found by tests/faults).
        was_writable = not is_read_only(ctx, ctx.target)
        ctx.run(ctx.target, d.read_only())
        own = target_own_writes(ctx)
        if own:
            if was_writable:
                ctx.run(ctx.target, d.writable())  # it stays the primary that holds those writes
            raise StepError(f"{ctx.target} took writes of its own as the new primary ({own}); "
                            "demoting it would lose them",
                            remedy="run `roleswap recover`: it finishes the swap instead")
        # its channel is still there (the applier was only stopped): start it again; one
        # reset or broken meanwhile is pointed again at the final position
        how = follow(ctx, ctx.target, ctx.source,
                     lambda: point_to(ctx, ctx.target, ctx.source, ctx.state.get("final_position")))
        return f"{ctx.target} read_only, replicating from {ctx.source} again{how}"


class Detach(Step):
    """After the resume: the new primary forgets the old one (its channel, and on MySQL
    the read-only an earlier fence persisted).  Before ``demote``, so the two never
    point at each other."""

    name = "detach"
    reversible = False

    def title(self, ctx: SwapContext) -> str:
        return f"{ctx.target} forgets {ctx.source}: stop + reset its replication"

    def apply(self, ctx: SwapContext) -> str:
        forget_source(ctx, ctx.target)
        persisted = ctx.dialect(ctx.target).forget_persisted_read_only()
        if persisted:
            ctx.run(ctx.target, persisted)
        return f"{ctx.target}'s channel to {ctx.source} removed"
