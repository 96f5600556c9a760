"""The runner's journaling: intent before every step, its end and the next step's start
in one write, and a step journaled ahead is withdrawn when its turn never comes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from roleswap.coord.journal import Journal
from roleswap.errors import StepError
from roleswap.swap import runner
from roleswap.swap.step import Step


class Recording(Step):
    def __init__(self, name: str, seen: list[tuple[str, dict[str, str]]]) -> None:
        self.name = name
        self.seen = seen

    def title(self, ctx: Any) -> str:
        return self.name

    def apply(self, ctx: Any) -> str:
        self.seen.append((self.name, ctx.journal.last_status()))
        return "ok"

    def undo(self, ctx: Any) -> str:
        return "undone"


def _ctx(tmp_path: Path, fail_at: tuple[str, str] | None = None) -> SimpleNamespace:
    journal = Journal(None, "c", tmp_path)
    journal.begin("s1", "db1", "db2", "gtid", ["a", "b", "c"], {})

    def failpoint(step: str, when: str) -> None:
        if (step, when) == fail_at:
            raise StepError(f"injected at {step}:{when}")

    return SimpleNamespace(swap_id="s1", source="db1", target="db2", journal=journal,
                           failpoint=failpoint, notes=[], state={}, config=SimpleNamespace(source="x"),
                           redis=None, redis_master=None)


def _writes(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "roleswap-c.journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_intent_before_each_step_and_one_write_per_boundary(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    ctx = _ctx(tmp_path)
    res = runner.execute(ctx, [Recording(n, seen) for n in "abc"], lambda r: None)  # type: ignore[arg-type]
    assert res.ok
    # every step found itself journaled as running, and its predecessor done
    assert seen == [("a", {"a": "running"}),
                    ("b", {"a": "done", "b": "running"}),
                    ("c", {"a": "done", "b": "done", "c": "running"})]
    # begin, a running, (a done + b running), (b done + c running), c done, phase done
    assert len(_writes(tmp_path)) == 6
    assert [e["status"] for e in _writes(tmp_path)[2]["steps"]] == ["running", "done", "running"]


def test_a_step_journaled_ahead_is_withdrawn_when_the_previous_fails_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_source_not_writable", lambda ctx: "")
    seen: list[tuple[str, dict[str, str]]] = []
    ctx = _ctx(tmp_path, fail_at=("a", "after"))
    res = runner.execute(ctx, [Recording(n, seen) for n in "abc"], lambda r: None)  # type: ignore[arg-type]
    assert res.rolled_back and [n for n, _ in seen] == ["a"]
    last = _writes(tmp_path)[-1]
    names = [e["name"] for e in last["steps"]]
    assert "b" not in names, "b never ran: it must not stay 'running' in the journal"
    assert ctx.journal.last_status() == {"a": "undone"}


def test_a_step_that_changes_nothing_is_journaled_with_its_end_only(tmp_path: Path) -> None:
    """No write-ahead for a read-only step, and the previous step's end waits for its end:
    one write for the two boundaries (the pause window holds catch-up and fence-check)."""
    seen: list[tuple[str, dict[str, str]]] = []
    plan = [Recording(n, seen) for n in "abc"]
    plan[1].intent = False  # like catch-up: it reads and waits
    res = runner.execute(_ctx(tmp_path), plan, lambda r: None)  # type: ignore[arg-type]
    assert res.ok
    assert seen[1] == ("b", {"a": "running"})  # a's end is not written yet, b's start never
    assert seen[2] == ("c", {"a": "done", "b": "done", "c": "running"})
    # begin, a running, (a done + b done + c running), c done, phase done
    writes = _writes(tmp_path)
    assert len(writes) == 5
    assert [(e["name"], e["status"]) for e in writes[2]["steps"]] == [
        ("a", "running"), ("a", "done"), ("b", "done"), ("c", "running")]


def test_a_deferred_end_is_kept_when_the_read_only_step_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_source_not_writable", lambda ctx: "")
    seen: list[tuple[str, dict[str, str]]] = []
    plan = [Recording(n, seen) for n in "abc"]
    plan[1].intent = False
    ctx = _ctx(tmp_path, fail_at=("b", "before"))
    res = runner.execute(ctx, plan, lambda r: None)  # type: ignore[arg-type]
    assert res.rolled_back
    entries = [(e["name"], e["status"]) for e in _writes(tmp_path)[-2]["steps"]]
    assert entries[:3] == [("a", "running"), ("a", "done"), ("b", "failed")]


def test_the_switch_move_times_reach_the_result(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.state.update(vip_move_ms=25.5, haproxy_move_ms=7.5)
    out = runner.execute(ctx, [Recording("a", [])], lambda r: None).as_dict()  # type: ignore[arg-type]
    assert out["vip_move_ms"] == 25.5 and out["haproxy_move_ms"] == 7.5
