"""The plan is data: which steps, in which order, for each mode (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from roleswap.config import parse_config
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.plan import build_plan, ponr_index
from roleswap.switch import make_switch


def ctx(tmp_path: Path, method: str, pause: bool = True,
        hooks: dict[str, str] | None = None) -> SwapContext:
    cfg = parse_config({
        "cluster": "c", "mysql": {"user": "u", "password": "p"},
        "replication": {"user": "r", "password": "p"},
        "servers": {"db1": {"host": "127.0.0.1"}, "db2": {"host": "127.0.0.1", "port": 3307}},
        "hooks": hooks or {}, "journal": {"dir": str(tmp_path)},
    })
    c = SwapContext(cfg, "db1", "db2", SwapOptions(switch_method=method, pause=pause))
    c.switch = make_switch(method)
    return c


def names(c: SwapContext) -> list[str]:
    return [s.name for s in build_plan(c)]


def test_endpoint_plan(tmp_path: Path) -> None:
    assert names(ctx(tmp_path, "endpoint")) == [
        "lock", "pre-sync", "pause", "fence", "catch-up", "promote", "publish", "fence-check",
        "resume", "detach", "demote", "repoint", "verify", "unlock"]


def test_the_new_primary_forgets_the_old_one_after_the_resume_and_before_the_demotion(
        tmp_path: Path) -> None:
    """Promote only stops the applier inside the window; the channel reset (detach) waits
    for the resume, and comes before demote so the two never point at each other --
    in recover's finish too, which runs the plan's steps in this order."""
    for method in ("endpoint", "none", "hook"):
        n = names(ctx(tmp_path, method, hooks={"after_resume": "/bin/true"} if method == "hook" else None))
        assert n.index("promote") < n.index("resume") < n.index("detach") < n.index("demote")
        if method == "hook":
            assert n.index("detach") < n.index("hook:after_resume")


def test_fence_check_is_the_last_step_before_the_point_of_no_return(tmp_path: Path) -> None:
    for method in ("endpoint", "none"):
        plan = build_plan(ctx(tmp_path, method))
        assert plan[ponr_index(plan) - 1].name == "fence-check"


def test_no_pause_keeps_the_point_of_no_return(tmp_path: Path) -> None:
    c = ctx(tmp_path, "none", pause=False)
    plan = build_plan(c)
    assert "pause" not in [s.name for s in plan]
    assert plan[ponr_index(plan)].name == "resume"


def test_hooks_slot_into_their_phases(tmp_path: Path) -> None:
    c = ctx(tmp_path, "hook", hooks={"before_fence": "/bin/true", "after_promote": "/bin/true",
                                     "after_resume": "/bin/true"})
    n = names(c)
    assert n.index("pause") < n.index("hook:before_fence") < n.index("fence")
    assert n.index("promote") < n.index("hook:after_promote") < n.index("resume")
    assert n.index("resume") < n.index("hook:after_resume") < n.index("demote")


def test_only_steps_before_resume_are_undone(tmp_path: Path) -> None:
    plan = build_plan(ctx(tmp_path, "endpoint"))
    p = ponr_index(plan)
    assert all(not s.reversible for s in plan[p:])
    assert {s.name for s in plan[:p] if s.reversible} == {"lock", "pause", "fence", "promote",
                                                         "publish"}


def test_unknown_switch_method_is_a_usage_error() -> None:
    from roleswap.errors import UsageError

    with pytest.raises(UsageError):
        make_switch("carrier-pigeon")
