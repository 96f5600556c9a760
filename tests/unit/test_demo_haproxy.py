"""The demo app's fixed address (VIP or HAProxy frontend), the haproxy move time from a
swap's result, and the bench tables with an "ours, haproxy" column (scripts/bench_window.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from roleswap.config import parse_config
from roleswap.demo.db import Fixed, fixed_address
from roleswap.demo.swaps import SwapRun, haproxy_move_ms

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_window import IN_WINDOW, main_table, window_profile, window_table


def conf(switch: dict[str, Any]) -> dict[str, Any]:
    return {"cluster": "c", "mysql": {"user": "ctl", "password": "pw"},
            "replication": {"user": "repl", "password": "pw"}, "switch": switch,
            "servers": {"db1": {"host": "10.0.0.11"}, "db2": {"host": "10.0.0.12"}}}


def test_the_app_connects_to_the_first_haproxy_frontend_or_the_vip() -> None:
    two = [{"name": "lb1", "socket": "/run/h1.sock", "frontend": "127.0.0.1:6033", "backend": "w"},
           {"name": "lb2", "socket": "/run/h2.sock", "frontend": "127.0.0.2:6034", "backend": "w"}]
    assert fixed_address(parse_config(conf({"method": "haproxy", "haproxy": two}))) == \
        Fixed("haproxy", "127.0.0.1", 6033)
    vip = {"method": "vip", "vip": "10.0.0.50/24", "interface": "eth0", "ssh_user": "ops"}
    assert fixed_address(parse_config(conf(vip))) == Fixed("vip", "10.0.0.50", None)
    assert fixed_address(parse_config(conf({**vip, "vip_port": 3307}))) == Fixed("vip", "10.0.0.50", 3307)
    assert fixed_address(parse_config(conf({"method": "endpoint"}))) is None
    assert Fixed("haproxy", "h", 1).label == "HAProxy" and Fixed("vip", "h").label == "the VIP"


def test_the_haproxy_move_time_comes_from_the_result_or_its_note() -> None:
    note = ("HAProxy moved db1 -> db2: 7 ms from maint to a new connection through every frontend "
            "reaching db2")
    assert haproxy_move_ms({"notes": ["something else", note]}) == 7.0
    assert haproxy_move_ms({"haproxy_move_ms": 6.4, "notes": [note]}) == 6.4
    assert haproxy_move_ms({"notes": ["HAProxy moved db1 -> db2: nan ms from maint"]}) is None
    assert haproxy_move_ms({"vip_move_ms": 30.0}) is None
    run = SwapRun("db1", "db2", 0, 0.0, 1.0, ok=True, haproxy_move_ms=7.0)
    assert run.as_dict()["haproxy_move_ms"] == 7.0


def _phase(name: str, move_key: str | None, steps: list[tuple[str, float]]) -> dict[str, Any]:
    spread = {"p50": None, "p95": None, "max": None}
    return {"name": name, "swaps": 1, "swaps_ok": 1, "pause_ms": {"p50": 20.0, "p95": 20.0, "max": 20.0},
            "write_block_ms": {"p50": 5.0, "p95": 5.0, "max": 5.0}, "vip_move_ms": dict(spread),
            "haproxy_move_ms": dict(spread),
            **({move_key: {"p50": 7.0, "p95": 8.0, "max": 9.0}} if move_key else {}),
            "held_requests": 3, "held_added_ms": {"p50": 10.0, "p99": 19.0, "max": 19.0}, "requests": 100,
            "rate": 250.0, "failed": 0, "acked_writes": 50, "lost": 0, "two_writable": 0,
            "latency_ms": {"p50": 2.0, "p99": 20.0, "max": 25.0},
            "per_swap": [{"ok": True, "pause_ms": 20.0,
                          "steps": [{"name": n, "ms": ms} for n, ms in steps]}]}


def test_haproxy_steps_sit_in_plan_order_in_the_window_profile() -> None:
    assert IN_WINDOW.index("fence") < IN_WINDOW.index("haproxy-maint") < IN_WINDOW.index("catch-up")
    assert IN_WINDOW.index("promote") < IN_WINDOW.index("haproxy-ready") < IN_WINDOW.index("fence-check")
    steps = [("lock", 1.0), ("pause", 4.0), ("fence", 2.0), ("haproxy-maint", 1.0), ("catch-up", 0.5),
             ("promote", 1.5), ("haproxy-ready", 6.0), ("fence-check", 1.0), ("resume", 2.0), ("demote", 3.0)]
    prof = window_profile(_phase("ours, haproxy", "haproxy_move_ms", steps))
    assert [n for n, _ in prof["steps"]] == ["pause", "fence", "haproxy-maint", "catch-up", "promote",
                                             "haproxy-ready", "fence-check", "resume"]
    assert prof["between_ms"] == 2.0 and prof["pause_ms"] == 20.0
    ours = window_profile(_phase("ours", None, [("pause", 4.0), ("fence", 2.0), ("promote", 1.5),
                                                ("publish", 1.0), ("resume", 2.0)]))
    out = window_table({"ours": ours, "ours, haproxy": prof}).splitlines()
    names = [line.split()[0] for line in out[1:-2]]
    assert names == ["pause", "fence", "haproxy-maint", "catch-up", "promote", "publish", "haproxy-ready",
                     "fence-check", "resume"]


def test_the_main_table_has_an_ours_haproxy_column_and_its_move_row() -> None:
    results = {"ours": _phase("ours", None, []),
               "haproxy": {**_phase("ours, haproxy", "haproxy_move_ms", []), "haproxy": "HAProxy 2.6.12",
                           "frontend": "127.0.0.1:6033", "backend": "mysql_primary"},
               "vip": {"skipped": "not root"}}
    text = main_table(results)
    assert "|  | ours | ours, haproxy |" in text
    assert "| HAProxy move p50 / p95 / max | - | 7 / 8 / 9 ms |" in text
    assert "VIP move" not in text  # no column moved a VIP
    assert "ours, vip: skipped (not root)" in text
    assert "ours, haproxy: loopback lab behind HAProxy 2.6.12" in text
    only = main_table({"haproxy": {"skipped": "haproxy is not installed"}})
    assert only.strip() == "ours, haproxy: skipped (haproxy is not installed)"


def test_requests_running_at_the_pause_come_from_its_detail_into_the_window_table() -> None:
    detail = ("drained after 16.1 ms: 1 live process(es), 0 pending, 3 request(s) were running "
              "at the pause")
    run = SwapRun("db1", "db2", 0, 0.0, 1.0, ok=True,
                  steps=[{"name": "pause", "status": "done", "ms": 16.1, "detail": detail}])
    assert run.running_at_pause == 3 and run.as_dict()["running_at_pause"] == 3
    quiet = SwapRun("db1", "db2", 0, 0.0, 1.0, ok=True, steps=[
        {"name": "pause", "ms": 1.0, "detail": "drained after 1.0 ms: 1 live process(es), 0 pending"}])
    assert quiet.running_at_pause == 0
    assert SwapRun("db1", "db2", 0, 0.0, 1.0, ok=True).running_at_pause is None  # --no-pause
    phase = _phase("ours", None, [("pause", 16.1), ("fence", 2.0)])
    phase["per_swap"][0]["running_at_pause"] = 3
    prof = window_profile(phase)
    assert prof["running_at_pause"] == 3.0
    assert window_table({"ours": prof}).splitlines()[-1].split() == ["running", "at", "the",
                                                                     "pause", "3"]
