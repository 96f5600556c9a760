"""`recover` from start to end: an interrupted swap (see :mod:`.recover`) or, with no
journal, a primary that restarted read-only (see :mod:`.reopen`).

Never prints: it returns a :class:`RecoverReport` and emits a ``RecoverDecided`` event
(before the ``confirm`` callback is asked) and a ``StepDone`` per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from roleswap.config import Config
from roleswap.coord import client as redis_client
from roleswap.coord.runbook import RunbookRecord, remaining
from roleswap.errors import RoleSwapError
from roleswap.events import OnEvent, RecoverDecided, StepDone
from roleswap.swap import reopen as ro
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.recover import Decision, RecoverReport, load_interrupted, run_recover

ConfirmRecover = Callable[[RecoverReport], bool]


def recover(config: Config, *, abandon: bool, emit: OnEvent, confirm: ConfirmRecover) -> RecoverReport:
    """Decide, ask ``confirm``, converge; the report says what happened (never raises a
    RoleSwapError: it is in ``report.error``).  Then, if a maintenance runbook was
    interrupted (its process died) and the cluster is whole again, close its record and
    name the steps it did not run (they are the operator's to re-run: a command that
    restarts a server is never re-run behind their back)."""
    rep = _recover(config, abandon=abandon, emit=emit, confirm=confirm)
    if rep.error is None and not rep.declined:
        rep.notes += close_runbook(config)
        rep.notes += resync_journal(config)
    return rep


def resync_journal(config: Config) -> list[str]:
    """Repair what a Redis that lost writes (a failover, a restart without persistence:
    see :mod:`roleswap.coord.journal`) leaves behind: write this host's journal copy back
    if Redis's is behind, publish the last finished swap's target again if it is the
    only writable server but the endpoint names another, and release a cluster lock no
    running swap holds (:func:`~roleswap.coord.swapstate.stale_lock`).  Notes saying
    what was done."""
    import redis as redis_mod

    ctx = SwapContext(config, "", "", SwapOptions())
    try:
        if ctx.redis is None:
            return []
        try:
            record = ctx.journal.load()
            behind = ctx.journal.redis_behind
            notes = []
            if record is not None and behind is not None and ctx.journal.resync():
                notes.append(f"the journal in Redis was behind this host's copy ({behind}): "
                             "Redis had lost writes; wrote the local copy back to Redis")
            if record is not None:
                notes += _republish(ctx, record)
            notes += _release_stale_lock(ctx)
        except redis_mod.RedisError as e:
            return [f"could not check the journal in Redis: Redis {type(e).__name__}"]
        return notes
    finally:
        ctx.close()


def _republish(ctx: SwapContext, record: dict[str, Any]) -> list[str]:
    """After lost writes: publish the finished swap's target again if it is the only
    writable server and the endpoint in Redis names another (endpoint method only)."""
    from roleswap.coord import endpoint

    target = record.get("to")
    if (ctx.config.switch_method != "endpoint" or record.get("phase") != "done"
            or ctx.redis is None or target not in ctx.config.servers):
        return []
    if [s.name for s in ctx.topology().writable()] != [target]:
        return []
    current = endpoint.current_primary(ctx.redis, ctx.config.cluster)
    if current is not None and current.get("name") == target:
        return []
    s = ctx.config.servers[target]
    endpoint.publish(ctx.redis, ctx.config.cluster, s.name, s.host, s.port, str(record["swap_id"]))
    was = current.get("name") if current else "nothing"
    return [f"the published primary was {was} (lost with those writes); published {target} again"]


def _release_stale_lock(ctx: SwapContext) -> list[str]:
    """Release the lock of a swap that has finished (brought back by lost writes)."""
    from roleswap.coord.swapstate import GONE, release_stale, stale_lock

    if ctx.redis is None:
        return []
    stale = stale_lock(ctx.journal, ctx.redis, ctx.config.cluster)
    if stale is None or not release_stale(ctx.redis, ctx.config.cluster, stale):
        return []
    why = ("its process on this host is gone" if stale.phase == GONE
           else f"it had finished (phase {stale.phase})")
    return [f"released the cluster lock of swap {stale.swap_id}: {why}; Redis had brought the "
            "lock back (lost writes)"]


def close_runbook(config: Config) -> list[str]:
    """Notes about an interrupted runbook (and mark it abandoned); [] when none."""
    import redis as redis_mod

    client = redis_client.connect(config)
    if client is None:
        return []
    try:
        rb = RunbookRecord(client, config.cluster)
        rec = rb.load_open()
        if rec is None:
            return []
        running = rb.alive()
        if running:
            return [f"runbook {rec.get('id')} ({rec.get('kind')}) is running now ({running}); "
                    "left alone"]
        left = remaining(rec)
        rb.finish("abandoned", rec.get("error"))
    except redis_mod.RedisError as e:
        return [f"could not read the runbook record: Redis {type(e).__name__}"]
    finally:
        client.close()
    steps = "; ".join(f"{i}. {s['what']}" for i, s in enumerate(left, 1)) or "none"
    return [f"runbook {rec.get('id')} ({rec.get('kind')}, started on {rec.get('host')} pid {rec.get('pid')}) "
            f"was interrupted; closed it. Steps it did not run: {steps}. Re-run them (or the "
            "runbook) yourself once `roleswap status` looks right"]


def _recover(config: Config, *, abandon: bool, emit: OnEvent, confirm: ConfirmRecover) -> RecoverReport:
    record = load_interrupted(config)
    if record is None:
        rep = _without_journal(config, emit, confirm)
        if abandon:
            rep.notes.insert(0, "no interrupted swap: nothing to abandon")
        return rep
    told: list[bool] = []

    def tell(rep: RecoverReport) -> None:
        if not told and rep.decision is not None:
            told.append(True)
            emit(_decided(rep))

    def ask(rep: RecoverReport) -> bool:
        tell(rep)
        if confirm(rep):
            return True
        rep.declined = True
        return False

    rep = run_recover(config, record, show=lambda r: emit(StepDone(r)), confirm=ask, abandon=abandon)
    tell(rep)  # a manual decision is never asked about: say it all the same
    return rep


def _decided(rep: RecoverReport) -> RecoverDecided:
    d = rep.decision or Decision("none", "")
    return RecoverDecided(rep.swap_id, rep.source, rep.target, rep.last_step, d.action, d.reason)


def _without_journal(config: Config, emit: OnEvent, confirm: ConfirmRecover) -> RecoverReport:
    """Nothing to do, unless no server is writable and one can be reopened safely."""
    rep = RecoverReport("", "", "", "-")
    ctx = ro.context(config)
    try:
        verdict = ro.find_reopen(ctx, ctx.topology())
        if verdict is None:
            rep.decision = Decision("none", "no interrupted swap: nothing to recover")
            emit(_decided(rep))
            return rep
        if verdict.primary is None:
            rep.error = ro.reopen_problem_error(verdict)
            rep.decision = Decision("manual", rep.error.message)
            emit(_decided(rep))
            return rep
        name = rep.primary = verdict.primary
        rep.decision = Decision("reopen", f"no server is writable: every replica follows {name}, "
                                          "which holds every transaction they hold (it restarted "
                                          f"read-only?); recover will make {name} writable again")
        emit(_decided(rep))
        if not confirm(rep):
            rep.declined = True
            return rep
        try:
            rep.detail = ro.reopen(config, name, ctx)
        except RoleSwapError as e:
            rep.error = e
        return rep
    finally:
        ctx.close()
