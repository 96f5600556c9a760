"""Pictures of swaps under load (PNG, matplotlib's Agg backend: no display needed).

* :func:`timeline`: every request of a demo/bench run as a point (x = seconds since the
  load started, y = latency, log scale), held requests and failures marked, and each
  swap's pause window and write-blocked window shaded; below it, close-ups of up to
  ``zoom`` swaps (the roleswap run, 0.05-0.3 s either side), where the millisecond
  windows and the held requests being released at the resume are visible.
* :func:`scaling`: the pause window (p50, p95) against the number of app processes.

matplotlib is an optional extra (``pip install 'roleswap[plot]'``), imported only when a
picture is drawn; :func:`require` fails early with that hint.

Redraw from saved JSON (``scripts/demo --json FILE``, or any JSON holding a scenario
saved with ``ScenarioResult.as_dict(records=True)`` or a list of scaling points)::

    python -m roleswap.demo.plot FILE [FILE ...] --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from roleswap.demo.scenario import ScenarioResult

INSTALL_HINT = "pip install 'roleswap[plot]'"
DPI = 100
# a close-up shows as much on each side of a swap's roleswap run as the run lasted, within
# these bounds: a 10 ms pause stays wider than a hairline, a slow swap keeps 0.3 s of context
ZOOM_S = (0.05, 0.3)
# colours: requests blue, held orange, failed red; windows gold (pause) and purple (writes blocked)
C_REQ, C_HELD, C_FAIL = "#1f77b4", "#e8710a", "#d62728"
C_PAUSE, C_BLOCK, C_RUN = "#f2c14e", "#8e6bbf", "#9e9e9e"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or :class:`PlotUnavailable` naming the extra."""
    try:
        import matplotlib  # optional extra, imported only to draw

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotUnavailable(f"plots need matplotlib ({e}); install it with: {INSTALL_HINT}") from None
    return plt


@dataclass
class _Swap:
    label: str  # "db1->db2"
    ok: bool
    windows: dict[str, tuple[float, float]]  # seconds since the load started
    pause_ms: float | None = None
    write_block_ms: float | None = None


@dataclass
class _Run:
    t: list[float] = field(default_factory=list)  # request sent, seconds since the load started
    ms: list[float] = field(default_factory=list)  # latency
    held: list[bool] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    swaps: list[_Swap] = field(default_factory=list)


def _from_result(res: ScenarioResult) -> _Run:
    # Rec.start and the swaps' windows are both time.monotonic() (CLOCK_MONOTONIC) seconds
    recs = sorted(res.records, key=lambda r: r.start)
    t0 = recs[0].start if recs else 0.0
    run = _Run([r.start - t0 for r in recs], [r.latency_ms for r in recs],
               [r.held_ms is not None for r in recs], [r.ok for r in recs])
    for s in res.swaps:
        wins = dict(s.windows) or {"swap": (s.started, s.ended)}  # no marks (the 2012 baseline)
        run.swaps.append(_Swap(f"{s.source}->{s.target}", s.ok,
                               {k: (a - t0, b - t0) for k, (a, b) in wins.items()},
                               s.pause_ms, s.write_block_ms))
    return run


def _from_dict(d: Mapping[str, Any]) -> _Run:
    """A scenario saved with ``as_dict(records=True)``."""
    t0 = float(d.get("t0") or 0.0)
    rows = d.get("records") or []
    run = _Run([float(r[0]) for r in rows], [float(r[1]) for r in rows], [bool(r[2]) for r in rows],
               [bool(r[3]) for r in rows])
    for s in d.get("swaps") or []:
        wins = {str(k): (float(v[0]) - t0, float(v[1]) - t0) for k, v in (s.get("windows") or {}).items()}
        run.swaps.append(_Swap(f"{s.get('from')}->{s.get('to')}", bool(s.get("ok")), wins,
                               s.get("pause_ms"), s.get("write_block_ms")))
    return run


# window -> how it is drawn (and its legend patch): writes blocked hatched, so that inside
# the pause window it stays readable instead of blending into a third colour
STYLE: dict[str, dict[str, Any]] = {
    "swap": {"facecolor": C_RUN, "alpha": 0.18, "lw": 0, "zorder": 0},
    "pause": {"facecolor": C_PAUSE, "alpha": 0.6, "lw": 0, "zorder": 1},
    "write_block": {"facecolor": "none", "edgecolor": C_BLOCK, "hatch": "////", "lw": 0, "zorder": 2},
}


def _shade(ax: Axes, sw: _Swap, scale: float = 1.0, shift: float = 0.0) -> None:
    for name, style in STYLE.items():
        if name in sw.windows:
            a, b = sw.windows[name]
            ax.axvspan((a - shift) * scale, (b - shift) * scale, **style)


def _points(ax: Axes, run: _Run, idx: Sequence[int], scale: float = 1.0, shift: float = 0.0,
            tails: bool = False) -> None:
    def xs(sel: list[int]) -> list[float]:
        return [(run.t[i] - shift) * scale for i in sel]

    plain = [i for i in idx if run.ok[i] and not run.held[i]]
    held = [i for i in idx if run.ok[i] and run.held[i]]
    failed = [i for i in idx if not run.ok[i]]
    ax.scatter(xs(plain), [run.ms[i] for i in plain], s=5, c=C_REQ, alpha=0.35, lw=0, zorder=3)
    if tails:  # a held request's wait: from sent to answered, at its latency
        for i in held:
            x0 = (run.t[i] - shift) * scale
            ax.plot([x0, x0 + run.ms[i] / 1000 * scale], [run.ms[i]] * 2, c=C_HELD, lw=0.8, alpha=0.6,
                    zorder=3)
    ax.scatter(xs(held), [run.ms[i] for i in held], s=22, c=C_HELD, marker="D", lw=0.4, edgecolors="k",
               zorder=4)
    ax.scatter(xs(failed), [run.ms[i] for i in failed], s=30, c=C_FAIL, marker="x", lw=1.2, zorder=5)


def _pick(swaps: list[_Swap], n: int) -> list[int]:
    """Which swaps get a close-up: all if they fit, else the first and the longest pauses."""
    have = [i for i, s in enumerate(swaps) if s.windows]
    longest = sorted(have, key=lambda i: -(swaps[i].pause_ms or 0.0))
    return sorted(list(dict.fromkeys(have[:1] + longest))[:max(0, n)])


def _title(run: _Run) -> str:
    secs = max(run.t, default=0.0)
    return (f"{len(run.swaps)} swap(s) under load: {len(run.t)} requests in {secs:.0f} s, "
            f"{sum(run.held)} held, {len(run.t) - sum(run.ok)} failed")


def timeline(result: ScenarioResult | Mapping[str, Any], path: Path | str, *, title: str | None = None,
             zoom: int = 3) -> Path:
    """The request-latency timeline of one run as a PNG at ``path``; returns ``path``.

    ``result``: a :class:`ScenarioResult` or its ``as_dict(records=True)``.  ``zoom``: at
    most this many close-ups (0: none)."""
    plt = require()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    run = _from_dict(result) if isinstance(result, Mapping) else _from_result(result)
    picks = _pick(run.swaps, zoom)
    fig: Figure = plt.figure(figsize=(10, 6.4 if picks else 4.2), dpi=DPI)
    grid = fig.add_gridspec(2 if picks else 1, max(1, len(picks)), height_ratios=[1.25, 1] if picks else [1],
                            hspace=0.42, wspace=0.08)
    top = fig.add_subplot(grid[0, :])
    lo, hi = min(run.ms, default=1.0), max(run.ms, default=10.0)
    ylim = (max(0.1, lo * 0.7), hi * 1.6)
    head = (ylim[0], hi * 12)  # log-scale headroom: the legend sits above the points, not on them
    for i, sw in enumerate(run.swaps):
        _shade(top, sw)
        a = min(v[0] for v in sw.windows.values()) if sw.windows else None
        if a is not None:
            top.annotate(f"#{i + 1}", (a, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                         textcoords="offset points", ha="center", va="bottom", fontsize=8,
                         color="k" if sw.ok else C_FAIL)
    _points(top, run, range(len(run.t)))
    top.set(yscale="log", ylim=head, xlim=(0, max(run.t, default=1.0) * 1.01 + 0.05),
            xlabel="seconds since the load started", ylabel="request latency (ms)")
    top.grid(True, which="major", alpha=0.3)
    top.set_title(title or _title(run), fontsize=11, pad=14)
    handles = [Line2D([], [], ls="", marker="o", ms=4, c=C_REQ, label=f"request ({len(run.t)})"),
               Line2D([], [], ls="", marker="D", ms=5, c=C_HELD, mec="k", mew=0.4,
                      label=f"held by the pause ({sum(run.held)})"),
               Line2D([], [], ls="", marker="x", ms=6, c=C_FAIL, mew=1.2,
                      label=f"failed ({len(run.t) - sum(run.ok)})"),
               Patch(**STYLE["pause"], label="pause window (traffic held)"),
               Patch(**STYLE["write_block"], label="writes blocked (no writable primary)"),
               Patch(**{**STYLE["swap"], "alpha": 0.35}, label="the whole roleswap run")]
    top.legend(handles=handles, loc="upper right", fontsize=8, ncol=2, framealpha=0.9)
    first: Axes | None = None
    for col, i in enumerate(picks):
        sw = run.swaps[i]
        ax = fig.add_subplot(grid[1, col], sharey=first) if first else fig.add_subplot(grid[1, col])
        first = first or ax
        zero = sw.windows.get("pause", sw.windows.get("swap", (0.0, 0.0)))[0]
        a, b = min(v[0] for v in sw.windows.values()), max(v[1] for v in sw.windows.values())
        margin = min(ZOOM_S[1], max(ZOOM_S[0], b - a))
        a, b = a - margin, b + margin
        _shade(ax, sw, 1000.0, zero)
        near = [j for j in range(len(run.t)) if a - 0.5 <= run.t[j] <= b]  # sent before, answered in view
        _points(ax, run, near, 1000.0, zero, tails=True)
        ax.set(yscale="log", ylim=(ylim[0], hi * 4), xlim=((a - zero) * 1000, (b - zero) * 1000),
               xlabel="ms since the pause" if "pause" in sw.windows else "ms since the swap")
        ax.grid(True, which="major", alpha=0.3)
        if col:
            ax.tick_params(labelleft=False)
        else:
            ax.set_ylabel("latency (ms)")
            ax.legend(handles=[Line2D([], [], c=C_HELD, lw=0.8, marker="D", ms=4, mec="k", mew=0.4,
                                      label="held: sent \u2192 answered")], loc="upper right", fontsize=7)
        bits = [f"pause {sw.pause_ms:.1f} ms" if sw.pause_ms is not None else "",
                f"writes blocked {sw.write_block_ms:.1f} ms" if sw.write_block_ms is not None else ""]
        state = "" if sw.ok else " FAILED"
        ax.set_title(f"#{i + 1} {sw.label}{state}\n" + ", ".join(b for b in bits if b), fontsize=9,
                     color="k" if sw.ok else C_FAIL)
    return _save(fig, plt, path)


# ---------------------------------------------------------------------------------------
def scaling(points: Sequence[Mapping[str, Any]], path: Path | str, *, title: str | None = None) -> Path:
    """The pause window against the number of app processes as a PNG at ``path``.

    ``points``: one dict per measured size, keys
      ``processes``                      number of app processes (int, > 0; x axis, log scale)
      ``pause_p50_ms``, ``pause_p95_ms``  the pause window measured with that many processes
      ``release_p50_ms``, ``release_p95_ms``  optional: resume -> the held requests released
    A missing or null value leaves that point out (:func:`scale_points` converts
    scripts/bench_scale.py's entries)."""
    plt = require()
    pts = sorted((p for p in points if p.get("processes")), key=lambda p: float(p["processes"]))
    fig: Figure = plt.figure(figsize=(7, 4.2), dpi=DPI)
    ax = fig.add_subplot()
    xs_all = [float(p["processes"]) for p in pts]
    for key, colour, name in (("pause", C_REQ, "pause window"), ("release", C_HELD, "release")):
        for q, style in (("p50", "-o"), ("p95", "--s")):
            got = [(float(p["processes"]), float(p[f"{key}_{q}_ms"])) for p in pts
                   if p.get(f"{key}_{q}_ms") is not None]
            if not got:
                continue
            ax.plot([x for x, _ in got], [y for _, y in got], style, c=colour, ms=5, lw=1.6,
                    alpha=1.0 if q == "p50" else 0.7, label=f"{name} {q}")
            if q == "p50" and key == "pause":
                for x, y in got:
                    ax.annotate(f"{y:.0f}", (x, y), xytext=(4, -3), textcoords="offset points", ha="left",
                                va="top", fontsize=7, color=colour)
    ax.set_xscale("log", base=2)
    if xs_all:
        ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
        ax.minorticks_off()
        ax.set_xlim(min(xs_all) / 1.3, max(xs_all) * 1.3)
    ax.set_ylim(bottom=0)
    ax.set(xlabel="app processes paused and resumed", ylabel="ms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "pause window vs app processes", fontsize=11)
    return _save(fig, plt, path)


def scale_points(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`scaling`'s points from scripts/bench_scale.py's ``"processes"`` entries
    (``n``; ``window_ms`` = pause -> drained + resume -> all released, and
    ``resume_to_all_released_ms``, each ``{"p50", "p95", ...}``); points pass through."""
    out = []
    for e in entries:
        if "processes" in e:
            out.append(dict(e))
        elif "n" in e:
            w, r = e.get("window_ms") or {}, e.get("resume_to_all_released_ms") or {}
            out.append({"processes": e["n"], "pause_p50_ms": w.get("p50"), "pause_p95_ms": w.get("p95"),
                        "release_p50_ms": r.get("p50"), "release_p95_ms": r.get("p95")})
    return out


def _save(fig: Figure, plt: Any, path: Path | str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight", pil_kwargs={"optimize": True})
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------
def find_plottables(obj: Any, name: str = "", depth: int = 0) -> Iterator[tuple[str, str, Any]]:
    """("timeline" | "scaling", name, data) for every scenario with records and every list of
    scaling points (dicts with "processes", or bench_scale's with "n" and "window_ms") inside
    a JSON document."""
    if depth > 5:
        return
    if isinstance(obj, dict):
        if isinstance(obj.get("records"), list) and isinstance(obj.get("swaps"), list):
            yield "timeline", name, obj
            return
        for k, v in obj.items():
            yield from find_plottables(v, f"{name}-{k}" if name else str(k), depth + 1)
    elif (isinstance(obj, list) and obj and all(isinstance(p, dict) for p in obj)
          and (all("processes" in p for p in obj) or any("window_ms" in p and "n" in p for p in obj))):
        yield "scaling", name, scale_points(obj)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m roleswap.demo.plot",
                                 description="Redraw timeline/scaling PNGs from saved demo or bench JSON.")
    ap.add_argument("json", nargs="+", type=Path, help="JSON from scripts/demo --json, or a bench's JSON")
    ap.add_argument("--out", type=Path, default=Path("."), help="directory for the PNGs (default .)")
    ap.add_argument("--zoom", type=int, default=3, help="close-ups per timeline (default 3)")
    args = ap.parse_args(argv)
    try:
        require()
    except PlotUnavailable as e:
        ap.error(str(e))
    written = 0
    for src in args.json:
        doc = json.loads(src.read_text())
        for kind, name, data in find_plottables(doc):
            out = args.out / f"{kind}-{name or src.stem}.png"
            if kind == "timeline":
                timeline(data, out, title=data.get("title"), zoom=args.zoom)
            else:
                host = name.endswith("_host")  # bench_scale's processes attached to a host agent
                scaling(data, out, title="pause window vs app processes (one host agent)"
                        if host else None)
            print(f"{out} ({out.stat().st_size // 1024} KB)")
            written += 1
    if not written:
        print("nothing to draw: no scenario with \"records\" and no list of scaling points "
              "(dicts with \"processes\")", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
