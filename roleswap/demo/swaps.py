"""Run ``roleswap --json`` swaps as a user would, and keep what they report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SwapRun:
    source: str
    target: str
    exit_code: int
    started: float  # time.monotonic() before the command
    ended: float
    ok: bool = False
    pause_ms: float | None = None
    write_block_ms: float | None = None
    total_ms: float | None = None
    vip_move_ms: float | None = None  # vip method: VIP removal -> a new connection reached --to
    haproxy_move_ms: float | None = None  # haproxy method: --from's entry in maint -> a new
    # connection through every frontend reached --to (see haproxy_move_ms())
    rolled_back: bool = False
    error: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # name ("pause", "write_block", "swap") -> (start, end) in time.monotonic() seconds: roleswap's
    # perf_counter marks, CLOCK_MONOTONIC on Linux like the load generator's Rec.start
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def wall_ms(self) -> float:
        return (self.ended - self.started) * 1000

    def step_ms(self, name: str) -> float | None:
        return next((float(s["ms"]) for s in self.steps if s.get("name") == name), None)

    @property
    def running_at_pause(self) -> int | None:
        """Requests still running when the apps acknowledged the pause: what its drain
        waited for (from the pause step's detail; 0 when it names none)."""
        detail = next((str(s.get("detail") or "") for s in self.steps if s.get("name") == "pause"), None)
        if detail is None:
            return None
        m = _RUNNING.search(detail)
        return int(m.group(1)) if m else 0

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "ok": self.ok, "exit_code": self.exit_code,
                "pause_ms": self.pause_ms, "write_block_ms": self.write_block_ms,
                "total_ms": self.total_ms, "vip_move_ms": self.vip_move_ms,
                "haproxy_move_ms": self.haproxy_move_ms, "wall_ms": round(self.wall_ms, 1),
                "running_at_pause": self.running_at_pause,
                "rolled_back": self.rolled_back, "error": self.error, "notes": self.notes,
                "windows": {k: [round(a, 6), round(b, 6)] for k, (a, b) in self.windows.items()},
                "steps": [{"name": s.get("name"), "status": s.get("status"), "ms": s.get("ms")}
                          for s in self.steps]}


_RUNNING = re.compile(r"(\d+) request\(s\) were running at the pause")
_HAPROXY_MOVED = re.compile(r"HAProxy moved \S+ -> \S+: (\d+(?:\.\d+)?) ms")


def haproxy_move_ms(data: dict[str, Any]) -> float | None:
    """The haproxy method's move time from a ``roleswap --json`` result: its
    ``haproxy_move_ms`` if there is one, else the note "HAProxy moved A -> B: N ms ..."
    (whole ms); None for other methods."""
    v = data.get("haproxy_move_ms")
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    for note in data.get("notes") or []:
        m = _HAPROXY_MOVED.match(str(note))
        if m:
            return float(m.group(1))
    return None


def parse_windows(raw: Any) -> dict[str, tuple[float, float]]:
    """``{"pause": [t0, t1], ...}`` from ``roleswap --json``; anything malformed is left out."""
    out: dict[str, tuple[float, float]] = {}
    if not isinstance(raw, dict):
        return out
    for name, span in raw.items():
        if (isinstance(span, list | tuple) and len(span) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in span)):
            out[str(name)] = (float(span[0]), float(span[1]))
    return out


def run_swap(config_path: Path | str, source: str, target: str, *, pause: bool = True,
             extra: tuple[str, ...] = (), timeout: float = 120.0) -> SwapRun:
    """``roleswap -c CONFIG --from SOURCE --to TARGET --yes --json`` (+ ``--no-pause``)."""
    argv = [sys.executable, "-m", "roleswap", "-c", str(config_path), "--from", source, "--to", target,
            "--yes", "--json", *([] if pause else ["--no-pause"]), *extra]
    t0 = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return SwapRun(source, target, -1, t0, time.monotonic(), error=f"timed out after {timeout:g}s")
    run = SwapRun(source, target, out.returncode, t0, time.monotonic())
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    except (ValueError, IndexError):
        data = {}
    if not isinstance(data, dict) or not data:
        run.error = f"no JSON from roleswap (exit {out.returncode}): {out.stderr.strip()[-300:]}"
        return run
    run.ok = bool(data.get("ok")) and out.returncode == 0
    run.pause_ms = data.get("pause_ms")
    run.write_block_ms = data.get("write_block_ms")
    run.total_ms = data.get("total_ms")
    run.vip_move_ms = data.get("vip_move_ms")
    run.haproxy_move_ms = haproxy_move_ms(data)
    run.rolled_back = bool(data.get("rolled_back"))
    run.steps = list(data.get("steps") or [])
    run.notes = [str(n) for n in data.get("notes") or []]
    run.windows = parse_windows(data.get("windows"))
    err = data.get("error")
    if isinstance(err, dict):
        run.error = str(err.get("message", ""))
    return run
