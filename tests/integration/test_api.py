"""The Python API against a real lab: swap under writes (nothing lost), events in order
and equal to what the CLI prints, target selection, refusals as exceptions, recover."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from roleswap import Cluster, NotConfirmedError
from roleswap.errors import PreflightError, UsageError
from roleswap.events import CheckDone, Event, Finished, PlanReady, StepDone, SwapBegins, TargetChosen
from tests.conftest import RunningLab
from tests.integration.swaphelp import (
    Writer,
    back_to_db1,
    present_ids,
    roleswap,
    snapshot,
    wait_healthy,
)
from tests.integration.test_gates import delay, on_stopped_replica


@pytest.fixture
def lab(writes_lab: RunningLab) -> RunningLab:
    wait_healthy(writes_lab, "db1")
    yield writes_lab  # type: ignore[misc]
    back_to_db1(writes_lab, recover_first=True)


def test_swap_under_writes_with_events(lab: RunningLab) -> None:
    cluster = Cluster.from_config(lab.config_path)
    assert [s.name for s in cluster.status().writable()] == ["db1"]
    events: list[Event] = []
    writer = Writer(lab)
    writer.start()
    try:
        time.sleep(0.3)
        result = cluster.swap("db1", "db2", on_event=events.append, max_lag=5.0)
        time.sleep(0.3)
    finally:
        writer.stop()
    assert result.ok and result.target == "db2" and result.pause_ms is not None
    assert [s.status for s in result.steps] == ["done"] * len(result.steps)
    # order: begin, every check, the plan, every step as it finished, the result last
    kinds = [e.kind for e in events]
    n_checks = sum(isinstance(e, CheckDone) for e in events)
    assert kinds == ["begin"] + ["check"] * n_checks + ["plan"] + ["step"] * len(result.steps) + ["result"]
    assert isinstance(events[0], SwapBegins) and events[0].source == "db1"
    plan = next(e for e in events if isinstance(e, PlanReady))
    assert [p.step for p in plan.steps] == [s.name for s in result.steps]
    assert [e.step.name for e in events if isinstance(e, StepDone)] == [s.name for s in result.steps]
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    final = events[-1]
    assert isinstance(final, Finished) and final.outcome["ok"] is True
    json.dumps([e.as_dict() for e in events])  # every event serialises
    # nothing acknowledged was lost, and db2 is the only writable server
    wait_healthy(lab, "db2")
    assert writer.acked and set(writer.acked) <= present_ids(lab, "db2")
    assert [s.name for s in cluster.status().writable()] == ["db2"]


def test_cli_json_is_the_result_event_and_events_stream(lab: RunningLab) -> None:
    cluster = Cluster.from_config(lab.config_path)
    events: list[Event] = []
    cluster.swap("db1", "db2", on_event=events.append)
    api_final = events[-1].as_dict()
    res = roleswap(lab, "--from", "db2", "--to", "db1", "--yes", "--events")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    kinds = [x["event"] for x in lines]
    assert kinds[0] == "begin" and kinds[-1] == "result" and "plan" in kinds
    steps = [x for x in lines if x["event"] == "step"]
    assert [s["name"] for s in steps] == [s["name"] for s in lines[-1]["steps"]]
    # the CLI's --json object has the same shape as the API's result event
    res = roleswap(lab, "--from", "db1", "--to", "db2", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    cli = json.loads(res.stdout)
    assert set(cli) == set(api_final) - {"event", "at"}
    assert cli["ok"] is True and cli["from"] == "db1"


def test_refusal_raises_with_checks_and_changes_nothing(lab: RunningLab) -> None:
    cluster = Cluster.from_config(lab.config_path)
    before = snapshot(lab)
    with pytest.raises(PreflightError) as e:
        cluster.swap("db2", "db3")  # db2 is not the primary
    assert e.value.exit_code == 3 and e.value.remedy
    assert any(c.status == "fail" and c.name == "primary" for c in e.value.checks)
    checked = cluster.check("db2", "db3")
    assert not checked.ok and checked.error is not None and not checked.plan
    with pytest.raises(NotConfirmedError):
        cluster.swap("db1", "db2", confirm=lambda _c: False)
    with pytest.raises(UsageError) as u:
        cluster.swap("db1", "db2", max_lagg=1)
    assert "max_lagg" in u.value.message and "max_lag" in u.value.remedy
    assert snapshot(lab) == before


def test_no_target_picks_the_best_replica(lab: RunningLab, tmp_path: Any) -> None:
    cfg = tmp_path / "prio.toml"
    cfg.write_text(lab.config_path.read_text().replace("[servers.db3]", "[servers.db3]\npriority = 5"))
    cluster = Cluster.from_config(cfg)
    events: list[Event] = []
    checked = cluster.check("db1", on_event=events.append)
    assert checked.ok and checked.target == "db3"
    chosen = next(e for e in events if isinstance(e, TargetChosen))
    assert "priority 5" in chosen.reason and dict(chosen.others)["db2"].startswith("priority 0")
    # a delayed db3 is skipped with its reason, even with the higher priority
    on_stopped_replica(lab, "db3", delay(lab, "db3", 3600))
    try:
        checked = cluster.check("db1", on_event=events.append)
        assert checked.target == "db2"
        res = roleswap(str(cfg), "--from", "db1", "--check")
        assert res.returncode == 0 and "target: db2" in res.stdout and "delayed replica" in res.stdout
    finally:
        on_stopped_replica(lab, "db3", delay(lab, "db3", 0))


def test_recover_through_the_api_is_idempotent(lab: RunningLab) -> None:
    cluster = Cluster.from_config(lab.config_path)
    rep = cluster.recover()
    assert rep.ok and rep.decision is not None and rep.decision.action == "none"
    assert cluster.recover().as_dict() == {"ok": True, "action": "none"}
