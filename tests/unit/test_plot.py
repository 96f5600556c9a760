"""roleswap.demo.plot: timeline and scaling PNGs from synthetic runs (no lab), the JSON
round trip the README images are redrawn from, SwapRun's ``windows``, and the error when
matplotlib is missing (``--plot`` must fail before any lab starts)."""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

import pytest

from roleswap.demo import main as demo_main
from roleswap.demo import plot
from roleswap.demo.load import Rec, summarize
from roleswap.demo.scenario import ScenarioResult
from roleswap.demo.swaps import SwapRun, parse_windows
from roleswap.demo.verify import Consistency, WritableReport

T0 = 5000.0  # time.monotonic() when the synthetic load starts


def _mpl_missing() -> str | None:
    try:
        plot.require()
    except plot.PlotUnavailable as e:
        return str(e)
    return None


needs_mpl = pytest.mark.skipif(_mpl_missing() is not None, reason=f"{_mpl_missing()} (CI installs it)")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def synthetic(swaps: int = 2, seconds: float = 8.0, rate: float = 250.0, failed: int = 0) -> ScenarioResult:
    """A run like the demo's: steady load, a swap every few seconds whose pause holds the
    requests sent inside it until the resume; ``failed`` requests fail right after swap 1."""
    rng = random.Random(7)
    runs = []
    for i in range(swaps):
        start = T0 + 2.0 + i * 2.5
        pause = (start + 0.030, start + 0.030 + 0.015 + 0.002 * i)
        block = (pause[0] + 0.004, pause[0] + 0.010)
        runs.append(SwapRun("db1" if i % 2 == 0 else "db2", "db2" if i % 2 == 0 else "db1", 0, start - 0.3,
                            start + 0.1, ok=True, pause_ms=(pause[1] - pause[0]) * 1000,
                            write_block_ms=(block[1] - block[0]) * 1000, total_ms=65.0,
                            windows={"pause": pause, "write_block": block, "swap": (start, start + 0.065)}))
    recs = []
    for n in range(int(seconds * rate)):
        t = T0 + n / rate
        lat = rng.lognormvariate(-5.8, 0.5)
        held = None
        for s in runs:
            a, b = s.windows["pause"]
            if a <= t <= b:
                lat, held = b - t + lat, (b - t) * 1000
        recs.append(Rec("write" if n % 2 else "read", t, t + lat, 200, held_ms=held, row_id=n))
    after = runs[0].windows["pause"][1] + 0.05 if runs else T0 + 1
    for k in range(failed):
        recs.append(Rec("write", after + k * 0.01, after + k * 0.01 + 0.004, 503, error="read_only"))
    load = summarize(recs, seconds)
    return ScenarioResult(True, runs, load, recs, WritableReport(100, 100, 0, [], 5.0, 0),
                          Consistency("db1", [], load.writes_sent, {}, 0, True))


# ---------------------------------------------------------------------------------------
def test_swaprun_parses_windows_and_saves_them() -> None:
    raw = {"pause": [12.5, 12.52], "write_block": [12.504, 12.51], "swap": [12.4, 12.6],
           "bad": [1], "worse": "x", "bool": [True, 2.0]}
    w = parse_windows(raw)
    assert w == {"pause": (12.5, 12.52), "write_block": (12.504, 12.51), "swap": (12.4, 12.6)}
    assert parse_windows(None) == {} and parse_windows([1, 2]) == {}
    run = SwapRun("db1", "db2", 0, 12.3, 12.7, ok=True, windows=w)
    assert run.as_dict()["windows"]["pause"] == [12.5, 12.52]
    assert SwapRun("db1", "db2", 0, 1, 2).as_dict()["windows"] == {}


def test_run_swap_reads_windows_from_roleswap_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from roleswap.demo import swaps

    out = {"ok": True, "pause_ms": 20.0, "windows": {"pause": [100.0, 100.02], "swap": [99.9, 100.1]}}

    class Done:
        returncode, stdout, stderr = 0, "progress\n" + json.dumps(out) + "\n", ""

    monkeypatch.setattr(swaps.subprocess, "run", lambda *a, **k: Done())
    run = swaps.run_swap("cfg.toml", "db1", "db2")
    assert run.ok and run.windows == {"pause": (100.0, 100.02), "swap": (99.9, 100.1)}


def test_records_export_is_compact_and_relative_to_t0() -> None:
    res = synthetic(swaps=1, seconds=3.0)
    d = res.as_dict(records=True)
    assert d["t0"] == T0 and len(d["records"]) == len(res.records)
    first = d["records"][0]
    assert first[0] == 0.0 and first[2:] == [0, 1] and first[1] > 0
    assert sum(r[2] for r in d["records"]) == res.load.held > 0
    assert "records" not in res.as_dict()  # only when asked for
    json.dumps(d)


# ---------------------------------------------------------------------------------------
@needs_mpl
def test_timeline_png(tmp_path: Path) -> None:
    out = plot.timeline(synthetic(swaps=2, failed=3), tmp_path / "sub" / "t.png", title="two swaps")
    assert out.stat().st_size > 10_000
    assert out.stat().st_size < 200_000, "keep the README's images small"
    w, h = png_size(out)
    assert 800 <= w <= 1100 and 500 <= h <= 700, (w, h)


@needs_mpl
def test_timeline_without_closeups_and_of_many_swaps(tmp_path: Path) -> None:
    _w, h = png_size(plot.timeline(synthetic(swaps=2), tmp_path / "flat.png", zoom=0))
    assert h < 450, "no close-up row"
    assert plot._pick(plot._from_result(synthetic(swaps=6, seconds=16)).swaps, 3)[0] == 0
    png_size(plot.timeline(synthetic(swaps=6, seconds=16), tmp_path / "six.png"))


@needs_mpl
def test_timeline_of_a_swap_without_windows_and_of_an_empty_run(tmp_path: Path) -> None:
    res = synthetic(swaps=1)
    res.swaps[0].windows = {}  # the 2012 baseline's swapper has no roleswap marks
    png_size(plot.timeline(res, tmp_path / "nowin.png"))
    empty = ScenarioResult(True, [], summarize([], 1.0), [], WritableReport(0, 0, 0, [], 0, 0),
                           Consistency(None, [], 0, {}, 0, True))
    png_size(plot.timeline(empty, tmp_path / "empty.png"))


@needs_mpl
def test_redraw_from_saved_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = synthetic(swaps=2)
    (tmp_path / "demo.json").write_text(json.dumps({"title": "saved", **res.as_dict(records=True)}))
    scale = {"processes": [{"processes": n, "pause_p50_ms": 10 + n / 4, "pause_p95_ms": 14 + n / 3,
                            "release_p50_ms": 1 + n / 50, "release_p95_ms": None} for n in (1, 4, 16, 64)]}
    (tmp_path / "bench.json").write_text(json.dumps({"scaling": scale, "other": [1, 2]}))
    assert plot.main([str(tmp_path / "demo.json"), str(tmp_path / "bench.json"), "--out",
                      str(tmp_path / "png")]) == 0
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert names == ["scaling-scaling-processes.png", "timeline-demo.png"]
    for p in (tmp_path / "png").iterdir():
        png_size(p)
    assert "timeline-demo.png" in capsys.readouterr().out
    no_windows = {**res.as_dict(records=True), "swaps": [{"from": "db1", "to": "db2", "ok": True}]}
    png_size(plot.timeline(no_windows, tmp_path / "nowin.png"))  # e.g. the 2012 baseline's swaps
    (tmp_path / "none.json").write_text("{}")
    assert plot.main([str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 1


@needs_mpl
def test_redraw_from_bench_scale_json(tmp_path: Path) -> None:
    """scripts/bench_scale.py's "processes" entries (a failed size has no figures)."""
    def fig(p50: float) -> dict[str, float]:
        return {"p50": p50, "p95": p50 * 1.4, "max": p50 * 2, "min": p50 / 2, "n": 5}

    procs = [{"n": n, "rounds": [], "window_ms": fig(3 + n / 50),
              "resume_to_all_released_ms": fig(1 + n / 90),
              "pause_to_drained_ms": fig(2), "lost": 0, "failures": []} for n in (1, 10, 100)]
    procs.append({"n": 300, "failures": ["N=300: 290 ready, 290 registered"]})
    (tmp_path / "scale.json").write_text(json.dumps({"machine": {}, "processes": procs}))
    assert plot.main([str(tmp_path / "scale.json"), "--out", str(tmp_path)]) == 0
    png_size(tmp_path / "scaling-processes.png")
    pts = plot.scale_points(procs)
    assert pts[0] == {"processes": 1, "pause_p50_ms": 3.02, "pause_p95_ms": 3.02 * 1.4,
                      "release_p50_ms": 1 + 1 / 90, "release_p95_ms": (1 + 1 / 90) * 1.4}
    assert pts[-1]["pause_p50_ms"] is None


@needs_mpl
def test_scaling_png(tmp_path: Path) -> None:
    pts = [{"processes": n, "pause_p50_ms": 8 + n * 0.2, "pause_p95_ms": 12 + n * 0.3} for n in (64, 1, 8)]
    pts.append({"processes": 256, "pause_p50_ms": None, "pause_p95_ms": None})  # not measured
    out = plot.scaling(pts, tmp_path / "s.png")
    w, h = png_size(out)
    assert 500 <= w <= 800 and 300 <= h <= 500 and out.stat().st_size < 150_000


# ---------------------------------------------------------------------------------------
def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with pytest.raises(plot.PlotUnavailable, match=r"pip install 'roleswap\[plot\]'"):
        plot.require()
    with pytest.raises(plot.PlotUnavailable):
        plot.scaling([{"processes": 1, "pause_p50_ms": 1, "pause_p95_ms": 2}], "/nonexistent/x.png")


def test_demo_plot_fails_before_any_lab_starts(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    def no_lab(*_a: object, **_k: object) -> None:
        raise AssertionError("a lab was started")

    monkeypatch.setattr(demo_main, "lab_up", no_lab)
    monkeypatch.setattr(demo_main, "get_server", no_lab)
    with pytest.raises(SystemExit) as exc:
        demo_main.main(["--no-hosts", "--plot", str(tmp_path / "t.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--plot" in err and "pip install 'roleswap[plot]'" in err
