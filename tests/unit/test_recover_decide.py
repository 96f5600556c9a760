"""recover's decision table (pure): every rule of roleswap.swap.recover.decide."""

from __future__ import annotations

from dataclasses import replace

import pytest

from roleswap.swap.recover import FINISH, MANUAL, ROLL_BACK, Facts, decide

BASE = Facts(source="db1", target="db2", passed_ponr=False, promote_started=False,
             source_ok=True, target_ok=True, healthy_around=None, source_extra="",
             target_own="")


def d(**kw: object) -> tuple[str, str, tuple[str, ...]]:
    dec = decide(replace(BASE, **kw))  # type: ignore[arg-type]
    return dec.action, dec.reason, dec.manual


def test_before_ponr_without_own_writes_rolls_back() -> None:
    assert d()[0] == ROLL_BACK
    assert d(promote_started=True)[0] == ROLL_BACK


def test_replicated_writes_are_not_the_targets_own() -> None:
    # the case: the target replicated the source's later writes (source_extra
    # empty because the target has them, target_own empty) -> never "finish"
    assert d(promote_started=True, source_extra="", target_own="")[0] == ROLL_BACK


def test_target_own_writes_before_ponr_finish() -> None:
    action, reason, _ = d(promote_started=True, target_own="0-2-7")
    assert action == FINISH and "0-2-7" in reason


def test_both_sides_wrote_is_manual_and_names_both() -> None:
    action, _, steps = d(promote_started=True, target_own="0-2-7", source_extra="0-1-9")
    assert action == MANUAL
    text = " ".join(steps)
    assert "0-2-7" in text and "0-1-9" in text


def test_after_ponr_finishes_unless_source_wrote_after() -> None:
    assert d(passed_ponr=True, promote_started=True)[0] == FINISH
    assert d(passed_ponr=True, promote_started=True, source_extra="0-1-9")[0] == MANUAL


@pytest.mark.parametrize("ponr", [False, True])
def test_source_down_is_manual(ponr: bool) -> None:
    action, reason, steps = d(passed_ponr=ponr, promote_started=True, source_ok=False,
                              source_extra=None, target_own=None)
    assert action == MANUAL and "db1" in reason
    assert any("read_only" in s for s in steps) and any("--abandon" in s for s in steps)


def test_target_down() -> None:
    # never promoted: rolling back touches only the source
    assert d(target_ok=False, source_extra=None, target_own=None)[0] == ROLL_BACK
    # promoted (it may hold writes) or past the point of no return: manual
    assert d(target_ok=False, promote_started=True, source_extra=None, target_own=None)[0] == MANUAL
    assert d(target_ok=False, passed_ponr=True, promote_started=True, source_extra=None,
             target_own=None)[0] == MANUAL


def test_a_healthy_cluster_is_followed() -> None:
    assert d(healthy_around="db2", promote_started=True)[0] == FINISH
    assert d(healthy_around="db1", passed_ponr=True, promote_started=True)[0] == ROLL_BACK
    # healthy around the source but the target holds writes of its own: not followed blindly
    assert d(healthy_around="db1", promote_started=True, target_own="0-2-1")[0] == FINISH


def test_both_down() -> None:
    assert d(source_ok=False, target_ok=False, source_extra=None, target_own=None)[0] == MANUAL
