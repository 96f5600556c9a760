"""The test-only fault points: ROLESWAP_HOLD_AT waits for its file, at that point only."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from roleswap.errors import StepError
from roleswap.swap import context
from roleswap.swap.context import SwapContext


def _at(step: str, when: str) -> None:
    SwapContext.failpoint(Any, step, when)  # type: ignore[arg-type]  # uses no instance state


def test_hold_waits_until_its_file_exists(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    gate = tmp_path / "go"
    monkeypatch.setenv(context.HOLD_ENV, f"pre-sync:before={gate}")
    seen: list[bool] = []
    waiter = threading.Thread(target=lambda: (_at("pre-sync", "before"),
                                              seen.append(gate.exists())))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # still held: the file is not there
    assert Path(f"{gate}.held").exists()  # and it said it got there
    gate.touch()
    waiter.join(30)
    assert seen == [True]


def test_hold_ignores_other_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(context.HOLD_ENV, f"pre-sync:after={tmp_path / 'never'}")
    _at("pre-sync", "before")
    _at("promote", "after")


def test_a_hold_never_released_fails_the_step(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(context.HOLD_ENV, f"lock={tmp_path / 'never'}")
    monkeypatch.setattr(context, "HOLD_LIMIT", 0.05)
    with pytest.raises(StepError, match="did not appear") as err:
        _at("lock", "before")
    assert "unset ROLESWAP_HOLD_AT" in (err.value.remedy or "")
