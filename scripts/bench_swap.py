#!/usr/bin/env python3
"""Benchmark role swaps under live web traffic: ours vs two baselines, in ONE run.

One lab (3 MariaDB + Redis), one demo app (Flask on gunicorn, 4 workers, behind
intermission), one steady read/write load at --rate req/s for every phase:

  ours         roleswap (pause, fence, catch-up, promote, publish, resume, ...)  --swaps times
  no pause     the same roleswap steps with --no-pause                          --swaps times
  original     the 2012 mysql_role_swap order and fixed waits (pause + 1 s, read_only,
               binlog unchanged over 3 s, promote, unpause + 1 s, CHANGE MASTER)  --original times

Usage: scripts/bench_swap.py [--swaps N] [--rate R] [--original N] [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roleswap.config import load_config  # noqa: E402
from roleswap.demo.original import original_swap  # noqa: E402
from roleswap.demo.runner import start_wsgi  # noqa: E402
from roleswap.demo.scenario import ScenarioResult, run_scenario  # noqa: E402
from roleswap.demo.swaps import SwapRun  # noqa: E402
from roleswap.lab import lab_down, lab_up  # noqa: E402


def pct(values: list[float], q: float) -> float | None:
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    try:
        ver = subprocess.run([mariadbd, "--version"], capture_output=True, text=True, check=False).stdout
        mariadb = ver.split()[2] if len(ver.split()) > 2 else "?"
    except OSError:
        mariadb = "?"
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "mariadb": mariadb}


def phase(res: ScenarioResult, name: str) -> dict[str, Any]:
    ok = [s for s in res.swaps if s.ok]
    pauses = [s.pause_ms for s in ok if s.pause_ms is not None]
    blocks = [s.write_block_ms for s in ok if s.write_block_ms is not None]
    held = [r.held_ms for r in res.records if r.held_ms is not None]
    failed_per_swap = [sum(1 for r in res.records if not r.ok and s.started <= r.start <= s.ended + 1.0)
                       for s in res.swaps]
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)
    return {
        "name": name, "swaps": len(res.swaps), "swaps_ok": len(ok),
        "pause_ms": {"p50": r(pct(pauses, 0.5)), "p95": r(pct(pauses, 0.95)),
                     "max": r(max(pauses, default=None))},
        "write_block_ms": {"p50": r(pct(blocks, 0.5)), "p95": r(pct(blocks, 0.95)),
                           "max": r(max(blocks, default=None))},
        "held_requests": len(held), "held_added_ms": {"p50": r(pct(held, 0.5)), "p99": r(pct(held, 0.99)),
                                                      "max": r(max(held, default=None))},
        "requests": res.load.sent, "rate": round(res.load.rate, 1), "failed": res.load.failed,
        "failed_per_swap_max": max(failed_per_swap, default=0), "failures": res.load.failures,
        "latency_ms": {"p50": r(res.load.p50_ms), "p99": r(res.load.p99_ms), "max": r(res.load.max_ms)},
        "acked_writes": res.consistency.acked, "lost": res.consistency.lost_total,
        "two_writable": res.writable.overlaps, "consistent": not res.consistency.problems,
        "problems": res.problems(allow_failed_requests=name == "no pause"),
        "per_swap": [s.as_dict() for s in res.swaps],
    }


def table(results: dict[str, Any]) -> str:
    phases = [results[k] for k in ("ours", "no_pause", "original") if k in results]
    def f(v: Any, unit: str = "") -> str:
        return "-" if v is None else f"{v:g}{unit}"
    rows = [
        ("swaps (ok/run)", [f"{p['swaps_ok']}/{p['swaps']}" for p in phases]),
        ("pause window p50", [f(p["pause_ms"]["p50"], " ms") for p in phases]),
        ("pause window p95", [f(p["pause_ms"]["p95"], " ms") for p in phases]),
        ("pause window max", [f(p["pause_ms"]["max"], " ms") for p in phases]),
        ("writes blocked p50", [f(p["write_block_ms"]["p50"], " ms") for p in phases]),
        ("held requests", [str(p["held_requests"]) for p in phases]),
        ("held: added latency p99", [f(p["held_added_ms"]["p99"], " ms") for p in phases]),
        ("requests sent", [str(p["requests"]) for p in phases]),
        ("request rate reached", [f(p["rate"], " req/s") for p in phases]),
        ("failed requests", [str(p["failed"]) for p in phases]),
        ("acknowledged writes", [str(p["acked_writes"]) for p in phases]),
        ("lost writes", [str(p["lost"]) for p in phases]),
        ("two writable servers", [str(p["two_writable"]) for p in phases]),
        ("request p99 / max", [f"{f(p['latency_ms']['p99'])} / {f(p['latency_ms']['max'], ' ms')}"
                               for p in phases]),
    ]
    head = ["", *[p["name"] for p in phases]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([name, *vals]) + " |" for name, vals in rows]
    ratios = results.get("ratios", {})
    lines.append("")
    lines.append(f"original / ours pause window (p50): {f(ratios.get('pause_original_over_ours'))}x "
                 f"(goal >= 10x)")
    lines.append(f"failed requests: ours {ratios.get('failed_ours')} vs no pause "
                 f"{ratios.get('failed_no_pause')}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swaps", type=int, default=20, help="swaps for ours and for no-pause (default 20)")
    ap.add_argument("--rate", type=float, default=250.0, help="requests/s, half writes (default 250)")
    ap.add_argument("--original", type=int, default=4, help="swaps with the 2012 sequence (default 4)")
    ap.add_argument("--gap", type=float, default=0.3, help="seconds of plain load between swaps")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this file")
    ap.add_argument("--quick", action="store_true", help="4 + 4 + 1 swaps (under a minute)")
    args = ap.parse_args()
    if args.quick:
        args.swaps, args.original = min(args.swaps, 4), min(args.original, 1)
    if args.swaps < 2 or args.rate < 1:
        ap.error("--swaps must be >= 2 and --rate >= 1")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="roleswap-bench-"))
    lab_dir = tmp / "lab"
    app = None
    results: dict[str, Any] = {
        "command": os.environ.get("BENCH_COMMAND") or "scripts/bench_swap.py " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "rate": args.rate, "write_ratio": 0.5, "app": "Flask on gunicorn, 4 workers x 8 threads (gthread)",
        "swaps": args.swaps, "original_swaps": args.original,
    }
    try:
        lab = lab_up(lab_dir)
        cfg = load_config(lab.config_path)
        app = start_wsgi(lab.config_path, tmp, workers=4, threads=8)
        common = {"rate": args.rate, "gap": args.gap, "warmup": 1.0, "settle": 0.5}
        print(f"bench: {args.rate:g} req/s, {args.swaps} swaps ours + {args.swaps} no-pause + "
              f"{args.original} original, lab in {tmp}", flush=True)

        def show(kind: str, what: object) -> None:
            if isinstance(what, SwapRun):
                state = "ok" if what.ok else f"FAILED {what.error[:100]}"
                pause = "-" if what.pause_ms is None else f"{what.pause_ms:.1f} ms"
                block = "-" if what.write_block_ms is None else f"{what.write_block_ms:.1f} ms"
                print(f"  {what.source}->{what.target} {state}: pause window {pause}, writes blocked {block}",
                      flush=True)

        print("ours:", flush=True)
        ours = run_scenario(lab.config_path, app.url, swaps=args.swaps, pause=True, progress=show, **common)
        results["ours"] = phase(ours, "ours")
        print("no pause:", flush=True)
        nopause = run_scenario(lab.config_path, app.url, swaps=args.swaps, pause=False, progress=show,
                               **common)
        results["no_pause"] = phase(nopause, "no pause")

        def original(src: str, dst: str) -> SwapRun:
            t = time.monotonic()
            o = original_swap(cfg, src, dst)
            run = SwapRun(src, dst, 0 if o.ok else 1, t, time.monotonic(), ok=o.ok, pause_ms=o.pause_ms,
                          write_block_ms=o.write_block_ms, total_ms=o.total_ms, error=o.error)
            return run

        if args.original > 0:
            print("original 2012 sequence:", flush=True)
            orig = run_scenario(lab.config_path, app.url, swaps=args.original, pause=True, swapper=original,
                                progress=show, **common)
            results["original"] = phase(orig, "original 2012")
        o50 = results.get("original", {}).get("pause_ms", {}).get("p50")
        u50 = results["ours"]["pause_ms"]["p50"]
        results["ratios"] = {
            "pause_original_over_ours": round(o50 / u50, 1) if o50 and u50 else None,
            "failed_ours": results["ours"]["failed"], "failed_no_pause": results["no_pause"]["failed"],
        }
    finally:
        if app is not None:
            app.stop()
        lab_down(lab_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - t0, 1)
    m = results["machine"]
    print(f"\nbench_swap: {results['command']}  ({m['nproc']} x {m['cpu']}, MariaDB {m['mariadb']}, "
          f"{results['seconds']} s)")
    print(f"load: {args.rate:g} req/s (half writes) on {results['app']}\n")
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nJSON written to {args.json}")
    bad = results["ours"]["problems"] + results["no_pause"]["problems"]
    if bad:
        print("\nproblems:\n  " + "\n  ".join(bad))
    if results.get("original", {}).get("problems"):
        print("\noriginal sequence (baseline, informational):\n  "
              + "\n  ".join(results["original"]["problems"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
