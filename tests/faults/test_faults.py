"""Real faults during a swap db1 -> db2 under a continuous writer, then `roleswap recover`.

Kinds: kill -9 of --from's or --to's mariadbd (restarted with its own config after a
random 0-1 s), Redis killed (restarted empty after the swap exits), SIGSTOPped for 1-5 s,
or restarted empty at once, and roleswap itself killed.  The fault hits a random delay
stratified over a swap's measured life (:meth:`Timeline.plan`): after the process start
for the preflight and after-the-end strata, after the journal's begin record (watched
from outside) for the strata inside the steps.  ``ROLESWAP_FAULT_SEED`` replays the
offsets, ``ROLESWAP_FAULT_CASES`` sets the cases per kind (default 6).  Every case ends
with :func:`check_invariants`.  No ROLESWAP_FAIL_AT / ROLESWAP_KILL_AT hooks are used.

Run alone: ``pytest tests/faults -q`` (or ``pytest -m faults``); the fault matrix is
printed at the end, evidence per case is kept under ROLESWAP_FAULT_REPORT_DIR if set.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from roleswap.coord.lock import ClusterLock
from tests.conftest import RunningLab
from tests.faults.conftest import RECORDS
from tests.faults.harness import (
    INVARIANTS,
    KINDS,
    FaultWriter,
    LabKeeper,
    RecoverRun,
    Timeline,
    case_rng,
    check_invariants,
    make_sampler,
    roles,
    run_case,
    snapshot,
    wait_until,
)

pytestmark = pytest.mark.faults

CASES = int(os.environ.get("ROLESWAP_FAULT_CASES", "6"))


def test_control_swap_without_fault_passes_every_invariant(
        flab: RunningLab, timeline: Timeline, fault_seed: int, report_dir: Path) -> None:
    """The same harness and checks with no fault: a false alarm here would void the suite."""
    rec = run_case(flab, "none", "start", 0.0, "control", case_rng(fault_seed, "none", 0), fault_seed, 0,
                   report_dir / "control")
    assert rec.swap["rc"] == 0, rec.explain()
    assert not rec.failed, rec.explain()


def test_invariants_detect_violations(flab: RunningLab, keeper: LabKeeper) -> None:
    """Each invariant fails when its property is broken for real (so none can pass vacuously)."""
    lab = flab
    sampler = make_sampler(lab)
    sampler.start()
    writer = FaultWriter(lab)
    writer.start()
    try:
        assert wait_until(lambda: len(writer.acked) >= 20, 10.0), f"writer: {writer.errors} errors"
        t_window = time.monotonic()  # an empty crash window, before every violation
        victim = writer.acked[0]
        # a row lost on one replica only, without a GTID
        lab.write_through_fence("db2", "SET SESSION sql_log_bin=0",
                                ("DELETE FROM app.writes WHERE id=%s", (victim,)))
        lab.stop_replica("db3", "SQL_THREAD")
        lab.set_read_only("db3", False)
        assert lab.config.redis_url is not None
        client = redis.Redis.from_url(lab.config.redis_url.reveal())
        assert ClusterLock(client, lab.config.cluster, 60).acquire("detector")
        assert wait_until(lambda: bool(sampler.two_writable()), 10.0), "the sampler never saw db3 writable"
        same = roles(snapshot(lab))
        runs = [RecoverRun(0, "finish", "synthetic", "", same, same),
                RecoverRun(0, "finish", "synthetic: a second run acting again", "", same, same)]
        checks, _evidence = check_invariants(lab, writer, sampler, t_window, t_window, runs)
    finally:
        writer.stop()
        sampler.stop()
    failed = {c.name for c in checks if not c.ok}
    assert failed == set(INVARIANTS), {c.name: c.detail for c in checks}
    keeper.rebuild("the detection test broke it on purpose")


# A stalled Redis (kept data) makes the swap wait, then finish or roll back in-process:
# on the servers, the same undo/finish that the server kills, roleswap kills and
# tests/integration/test_failures.py exercise on every flavor.  A Redis that loses its
# data (redis-kill, redis-restart) leaves recover without a journal, deciding from the
# servers alone: that stays on every flavor.
REDIS_STALL_SAME_ON_EVERY_FLAVOR = pytest.mark.flavor_independent(
    "a Redis stall: the servers see the undo/finish every flavor's kills already exercise")


@pytest.mark.parametrize("case", range(CASES))
@pytest.mark.parametrize("kind", [pytest.param(k, marks=REDIS_STALL_SAME_ON_EVERY_FLAVOR) if k == "redis-stop"
                                  else k for k in KINDS])
def test_fault(kind: str, case: int, flab: RunningLab, keeper: LabKeeper, timeline: Timeline,
               fault_seed: int, report_dir: Path) -> None:
    """One real fault of ``kind`` at the ``case``-th stratum; then the invariants."""
    rng = case_rng(fault_seed, kind, case)
    anchor, offset, stratum = timeline.plan(case, CASES, rng)
    rec = run_case(flab, kind, anchor, offset, stratum, rng, fault_seed, case,
                   report_dir / f"{kind}-{case}")
    RECORDS.append(rec)
    timeline.observe(rec.timing)
    if rec.failed:
        keeper.broken = f"{kind} #{case} failed {rec.failed}"
    assert not rec.failed, rec.explain()
