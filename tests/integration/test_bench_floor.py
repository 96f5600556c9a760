"""scripts/bench_floor.py on a real lab: every figure is measured (a positive p50 no larger
than its max) and the report line names each of them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_floor import LABELS, floor_line, measure_floor

from tests.conftest import RunningLab


def test_floor_measures_every_figure_on_the_lab(lab: RunningLab) -> None:
    floor = measure_floor(lab.lab, samples=3, idle=0.02, settle=0)
    assert floor["samples"] == 3 and floor["mysql_server"] == "db1"
    for key, _label in LABELS:
        assert 0 < floor[key]["p50"] <= floor[key]["max"], key
    line = floor_line(floor)
    assert "Redis PING after 0.02 s idle" in line and "fork + wait" in line
    assert line.count(";") == len(LABELS) - 1
