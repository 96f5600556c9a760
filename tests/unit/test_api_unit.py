"""The API's option checking and its event objects (no servers needed)."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest

from roleswap.api import SWAP_OPTION_DEFAULTS, CheckResult, Cluster
from roleswap.errors import PreflightError, UsageError
from roleswap.events import CheckDone, Finished, PlanReady, RecoverDecided, StepDone, SwapBegins
from roleswap.swap.check import Check
from roleswap.swap.flow import PlanLine
from roleswap.swap.runner import StepResult

CONFIG = {"cluster": "c", "mysql": {"user": "u", "password": "s3cret"},
          "replication": {"user": "r", "password": "s3cret"},
          "servers": {"db1": {"host": "127.0.0.1"}, "db2": {"host": "127.0.0.2"}}}


def cluster() -> Cluster:
    return Cluster.from_config(CONFIG)


def test_defaults_are_the_clis() -> None:
    from roleswap.cli import cli

    # the CLI spells its defaults itself (importing the API would load the engine for
    # `roleswap lab ...` too): this keeps the two equal
    unset = {None, getattr(click.core, "UNSET", None)}  # click 8.3 says UNSET for "no default"
    params = {p.name: (lambda v: None if v in unset else v)(p.get_default(click.Context(cli)))
              for p in cli.params}
    for name, default in SWAP_OPTION_DEFAULTS.items():
        key = "switch_method" if name == "switch" else name
        assert params[key] == default, name
    o = cluster().options()
    assert o.pause and o.max_lag == 5.0 and o.switch_method == "endpoint" and o.fence_timeout == 2


@pytest.mark.parametrize("kw,needle", [
    ({"max_lagg": 1}, "unknown swap option(s): max_lagg"),
    ({"max_lag": -1}, "max_lag = -1 must be a number >= 0"),
    ({"catchup_timeout": 0}, "catchup_timeout = 0 must be a number >= 0.1"),
    ({"fence_timeout": 1.5}, "fence_timeout = 1.5 must be whole seconds"),
    ({"pause_ttl": True}, "pause_ttl = True must be a number"),
    ({"drain_policy": "maybe"}, "drain_policy = 'maybe'"),
    ({"switch": "carrier-pigeon"}, "is not a switch method"),
    ({"no_pause": "yes"}, "no_pause must be True or False"),
])
def test_bad_options_are_refused_by_name(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError) as e:
        cluster().options(**kw)
    assert needle in e.value.message and e.value.remedy


def test_options_map_to_the_engine() -> None:
    o = cluster().options(no_pause=True, switch="none", max_lag=1, kill_privileged=True)
    assert not o.pause and o.switch_method == "none" and o.max_lag == 1.0 and o.kill_privileged


def test_events_serialise_with_kind_and_time_first() -> None:
    check = Check.fail("primary", "db2 is not writable", "swap from the primary")
    evs = [SwapBegins("db1", "db2", "c", "endpoint", True, "gtid", at=1.0), CheckDone(check, at=2.0),
           PlanReady("gtid", (PlanLine("fence", "read_only on db1", True),), at=3.0),
           StepDone(StepResult("fence", "done", 1.234, "ok"), at=4.0),
           RecoverDecided("abc", "db1", "db2", "fence (done)", "finish", "past the fence", at=5.0),
           Finished({"ok": True}, at=6.0)]
    out = [e.as_dict() for e in evs]
    assert [list(d)[:2] for d in out] == [["event", "at"]] * len(out)
    assert [d["event"] for d in out] == ["begin", "check", "plan", "step", "decision", "result"]
    assert out[1]["status"] == "fail" and out[1]["remedy"] == "swap from the primary"
    assert out[3]["ms"] == 1.23
    json.dumps(out)


def test_check_result_as_dict() -> None:
    bad = Check.fail("primary", "no", "fix it")
    r = CheckResult("db1", "db2", "gtid", (bad,), (), PreflightError("refused", "fix it"))
    d = r.as_dict()
    assert d["ok"] is False and d["error"]["type"] == "PreflightError" and "plan" not in d
    ok = CheckResult("db1", "db2", "gtid", (Check.ok("primary", "fine"),), (PlanLine("a", "b", False),))
    assert ok.ok and ok.as_dict()["plan"] == [{"step": "a", "title": "b", "undo": False}]
