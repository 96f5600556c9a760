"""One run of "swaps under load", shared by the demo, the end-to-end tests and the bench.

Start the load and the read_only sampler, swap back and forth between the primary
and a replica, stop, then prove the outcome (see :meth:`ScenarioResult.problems`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roleswap.config import load_config
from roleswap.demo.load import LoadConfig, LoadGenerator, Rec, Summary, summarize
from roleswap.demo.swaps import SwapRun, run_swap
from roleswap.demo.verify import Consistency, WritableReport, WritableSampler, check_consistency, node_conn


def current_primary_name(config_path: Path | str) -> str:
    cfg = load_config(config_path)
    writable = []
    for name in cfg.servers:
        conn = node_conn(cfg, name, read_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.read_only AS ro")
                row = cur.fetchone()
        finally:
            conn.close()
        if row and not int(row["ro"] if isinstance(row, dict) else row[0]):
            writable.append(name)
    if len(writable) != 1:
        raise RuntimeError(f"expected exactly one writable server, found {writable or 'none'}")
    return writable[0]


def recover(config_path: Path | str) -> str:
    """``roleswap recover --yes --json`` after a swap stopped past the point of no return."""
    out = subprocess.run([sys.executable, "-m", "roleswap", "-c", str(config_path), "recover", "--yes",
                          "--json"], capture_output=True, text=True, timeout=120, check=False)
    return f"exit {out.returncode}"


@dataclass
class ScenarioResult:
    pause: bool
    swaps: list[SwapRun]
    load: Summary
    records: list[Rec]
    writable: WritableReport
    consistency: Consistency
    recovered: list[str] = field(default_factory=list)

    def held_during(self, run: SwapRun) -> list[Rec]:
        return [r for r in self.records if r.held_ms is not None and run.started <= r.start <= run.ended]

    def stale_writes(self) -> list[Rec]:
        """Acknowledged writes sent well after a swap finished but not served by its new primary."""
        out = []
        done = [s for s in self.swaps if s.ok]
        for i, s in enumerate(done):
            until = done[i + 1].started if i + 1 < len(done) else float("inf")
            out += [r for r in self.records if r.kind == "write" and r.ok and
                    s.ended + 0.05 <= r.start < until and r.server != s.target]
        return out

    def problems(self, *, allow_failed_requests: bool = False) -> list[str]:
        out = []
        for s in self.swaps:
            if not s.ok:
                why = s.error.splitlines()[0] if s.error else "no error message"
                out.append(f"swap {s.source}->{s.target} failed (exit {s.exit_code}): {why}")
        if self.load.failed and not allow_failed_requests:
            out.append(f"{self.load.failed} request(s) failed: {self.load.failures}")
        if self.load.served_paused:
            out.append(f"{self.load.served_paused} request(s) served while their process was paused")
        held = [r for r in self.records if r.held_ms is not None]
        bad_held = [r for r in held if not r.ok]
        if bad_held:
            out.append(f"{len(bad_held)} held request(s) did not succeed after the resume")
        outside = [r for r in held if not any(s.started <= r.start <= s.ended for s in self.swaps)]
        if outside:
            out.append(f"{len(outside)} request(s) held outside any swap")
        if self.pause and self.stale_writes():
            out.append(f"{len(self.stale_writes())} write(s) after a swap went to the old primary")
        if self.writable.overlaps:
            out.append(f"two writable servers at once: {self.writable.overlap_examples}")
        out += self.consistency.problems
        return out

    def explain(self, limit: int = 4000) -> str:
        """The result as indented JSON without the consistency details, cut at ``limit``
        characters: for a failing test's message."""
        data = {k: v for k, v in self.as_dict().items() if k != "consistency"}
        return json.dumps(data, indent=1, default=str)[:limit]

    def as_dict(self, *, records: bool = False) -> dict[str, Any]:
        """The result as JSON; ``records``: also every request, compactly, for a redrawn timeline
        (``roleswap.demo.plot``): ``t0`` the first request's time.monotonic() (the clock of the
        swaps' ``windows``), ``records`` ``[[start_s - t0, latency_ms, held 0/1, ok 0/1], ...]``."""
        out = {"pause": self.pause, "swaps": [s.as_dict() for s in self.swaps],
               "load": self.load.as_dict(), "writable": self.writable.as_dict(),
               "consistency": self.consistency.as_dict(), "recovered": self.recovered,
               "held_per_swap": [len(self.held_during(s)) for s in self.swaps],
               "stale_writes": len(self.stale_writes()), "problems": self.problems()}
        if records:
            t0 = min((r.start for r in self.records), default=0.0)
            out["t0"] = round(t0, 6)
            out["records"] = [[round(r.start - t0, 4), round(r.latency_ms, 2), int(r.held_ms is not None),
                               int(r.ok)] for r in sorted(self.records, key=lambda r: r.start)]
        return out


Progress = Callable[[str, Summary | SwapRun], None]
Swapper = Callable[[str, str], SwapRun]  # (source, target) -> what happened


def run_scenario(
    config_path: Path | str, base_url: str, *, swaps: int, rate: float = 250.0, write_ratio: float = 0.5,
    concurrency: int = 16, pause: bool = True, warmup: float = 1.0, gap: float = 0.5, settle: float = 1.0,
    partner: str | None = None, progress: Progress | None = None, progress_every: float = 0.5,
    swapper: Swapper | None = None, client: str = "httpx",
) -> ScenarioResult:
    """``swaps`` swaps alternating between the current primary and ``partner`` under load.

    By default each swap is ``roleswap --json`` (with ``--no-pause`` if not ``pause``);
    ``swapper`` replaces it (the bench's 2012-sequence baseline).  ``client``: the load
    generator's HTTP client (:class:`LoadConfig`)."""
    cfg = load_config(config_path)
    a = current_primary_name(config_path)
    b = partner or next(n for n in sorted(cfg.servers) if n != a)
    budget = warmup + settle + swaps * (gap + 30.0)  # a hard bound; stop() ends it much sooner
    gen = LoadGenerator(LoadConfig(base_url, rate=rate, write_ratio=write_ratio, concurrency=concurrency,
                                   max_requests=int(rate * budget) + 1, max_seconds=budget, client=client))
    sampler = WritableSampler(cfg).start()
    stop_progress = threading.Event()
    runs: list[SwapRun] = []
    recovered: list[str] = []

    def tick() -> None:
        while not stop_progress.wait(progress_every):
            if progress is not None:
                progress("load", gen.summary())

    ticker = threading.Thread(target=tick, name="progress", daemon=True)
    try:
        gen.start()
        ticker.start()
        time.sleep(warmup)
        for i in range(swaps):
            src, dst = (a, b) if i % 2 == 0 else (b, a)
            run = swapper(src, dst) if swapper else run_swap(config_path, src, dst, pause=pause)
            runs.append(run)
            if progress is not None:
                progress("swap", run)
            if not run.ok and run.exit_code == 5:  # past the point of no return: finish it
                recovered.append(f"{src}->{dst}: recover {recover(config_path)}")
            elif not run.ok:
                break
            time.sleep(gap)
        time.sleep(settle)
    finally:
        gen.stop()
        stop_progress.set()
        summary = gen.join()
        writable = sampler.stop()
    records = list(gen.records)
    consistency = check_consistency(cfg, summary.acked)
    return ScenarioResult(pause, runs, summarize(records, summary.seconds), records, writable,
                          consistency, recovered)
