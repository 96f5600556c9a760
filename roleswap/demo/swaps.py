"""Run ``roleswap --json`` swaps as a user would, and keep what they report."""

from __future__ import annotations

import json
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
    rolled_back: bool = False
    error: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def wall_ms(self) -> float:
        return (self.ended - self.started) * 1000

    def step_ms(self, name: str) -> float | None:
        return next((float(s["ms"]) for s in self.steps if s.get("name") == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "ok": self.ok, "exit_code": self.exit_code,
                "pause_ms": self.pause_ms, "write_block_ms": self.write_block_ms,
                "total_ms": self.total_ms, "vip_move_ms": self.vip_move_ms, "wall_ms": round(self.wall_ms, 1),
                "rolled_back": self.rolled_back, "error": self.error, "notes": self.notes,
                "steps": [{"name": s.get("name"), "status": s.get("status"), "ms": s.get("ms")}
                          for s in self.steps]}


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
    run.rolled_back = bool(data.get("rolled_back"))
    run.steps = list(data.get("steps") or [])
    run.notes = [str(n) for n in data.get("notes") or []]
    err = data.get("error")
    if isinstance(err, dict):
        run.error = str(err.get("message", ""))
    return run
