#!/usr/bin/env python3
"""Benchmark role swaps under live web traffic: ours vs two baselines, in ONE run.

One lab (3 MariaDB + Redis), one demo app (Flask on gunicorn, 4 workers, behind
intermission), one steady read/write load at --rate req/s for every phase:

  ours         roleswap (pause, fence, catch-up, promote, publish, resume, ...)  --swaps times
  no pause     the same roleswap steps with --no-pause                          --swaps times
  original     the 2012 mysql_role_swap order and fixed waits (pause + 1 s, read_only,
               binlog unchanged over 3 s, promote, unpause + 1 s, CHANGE MASTER)  --original times

and, as root, a second lab with every server on a host of its own (network namespace,
sshd) where roleswap moves a floating IP (the vip switch method) and the same app,
under the same load, connects to the VIP:

  ours, vip    roleswap with the vip method  --vip-swaps times; also the VIP move time
               (removal from --from -> a new connection to the VIP reaches --to)

All of that runs on the first --server flavor.  Then, per further flavor, a loopback lab of
that flavor gets --flavor-swaps swaps of "ours" under the same load, and one table compares
the flavors: pause window, writes blocked, failed requests and lost writes.

Usage: scripts/bench_swap.py [--server NAME[,NAME...]] [--swaps N] [--rate R] [--original N]
                             [--vip-swaps N] [--no-vip] [--vip-subnet S] [--flavor-swaps N]
                             [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roleswap.config import load_config  # noqa: E402
from roleswap.demo.hostslab import (  # noqa: E402
    BENCH_SUBNETS,
    hosts_unavailable,
    pick_subnet,
    vip_address,
    vip_problems,
)
from roleswap.demo.original import original_swap  # noqa: E402
from roleswap.demo.runner import start_wsgi  # noqa: E402
from roleswap.demo.scenario import ScenarioResult, run_scenario  # noqa: E402
from roleswap.demo.swaps import SwapRun  # noqa: E402
from roleswap.lab import Lab, lab_down, lab_up  # noqa: E402
from roleswap.lab.flavors import FLAVORS, get_server  # noqa: E402


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
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def server_label(name: str) -> str:
    """"MariaDB 10.11.19-MariaDB-0+deb12u1" for a flavor name (fetching it first if needed)."""
    srv = get_server(name, lambda m: print(f"  {m}", flush=True))
    return f"{'MySQL' if srv.flavor.engine == 'mysql' else 'MariaDB'} {srv.version}"


def phase(res: ScenarioResult, name: str) -> dict[str, Any]:
    ok = [s for s in res.swaps if s.ok]
    pauses = [s.pause_ms for s in ok if s.pause_ms is not None]
    blocks = [s.write_block_ms for s in ok if s.write_block_ms is not None]
    moves = [s.vip_move_ms for s in ok if s.vip_move_ms is not None]
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
        "vip_move_ms": {"p50": r(pct(moves, 0.5)), "p95": r(pct(moves, 0.95)),
                        "max": r(max(moves, default=None))},
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
    phases = [results[k] for k in ("ours", "no_pause", "original", "vip") if isinstance(results.get(k), dict)
              and "pause_ms" in results[k]]
    def f(v: Any, unit: str = "") -> str:
        return "-" if v is None else f"{v:g}{unit}"
    rows = [
        ("swaps (ok/run)", [f"{p['swaps_ok']}/{p['swaps']}" for p in phases]),
        ("pause window p50", [f(p["pause_ms"]["p50"], " ms") for p in phases]),
        ("pause window p95", [f(p["pause_ms"]["p95"], " ms") for p in phases]),
        ("pause window max", [f(p["pause_ms"]["max"], " ms") for p in phases]),
        ("writes blocked p50", [f(p["write_block_ms"]["p50"], " ms") for p in phases]),
        ("VIP move p50 / p95 / max", [" / ".join([f(p["vip_move_ms"]["p50"]), f(p["vip_move_ms"]["p95"]),
                                                  f(p["vip_move_ms"]["max"], " ms")])
                                      if p["vip_move_ms"]["p50"] is not None else "-" for p in phases]),
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
    vip = results.get("vip") or {}
    if "pause_ms" in vip:
        lines.append(f"ours, vip: hosts lab {vip['subnet']} (each server in its own network namespace "
                     f"with sshd), VIP {vip['vip']} moved over SSH; the app connects to the VIP")
    elif vip.get("skipped"):
        lines.append(f"ours, vip: skipped ({vip['skipped']})")
    return "\n".join(lines)


def vip_section(tmp: Path, args: argparse.Namespace, common: dict[str, Any], show: Any,
                apps: list[Any], labs: list[Path]) -> dict[str, Any]:
    """``--vip-swaps`` swaps with the vip method on a hosts lab of its own (root only)."""
    why_not = "--no-vip" if args.no_vip or args.vip_swaps < 1 else hosts_unavailable()
    if why_not is not None:
        print(f"ours, vip: skipped ({why_not})", flush=True)
        return {"skipped": why_not}
    lab_dir = tmp / "vlab"
    subnet = args.vip_subnet or pick_subnet(lab_dir, BENCH_SUBNETS)
    labs.append(lab_dir)
    t = time.monotonic()
    lab: Lab = lab_up(lab_dir, hosts=True, subnet=subnet, server=args.servers[0])
    app = start_wsgi(lab.config_path, tmp / "vapp", workers=4, threads=8)
    apps.append(app)
    print(f"ours, vip: hosts lab {subnet}, VIP {vip_address(lab)} (up in {time.monotonic() - t:.1f} s):",
          flush=True)
    res = run_scenario(lab.config_path, app.url, swaps=args.vip_swaps, pause=True, progress=show, **common)
    out = phase(res, "ours, vip")
    out["problems"] += vip_problems(lab, res.consistency.primary)
    out.update(subnet=subnet, vip=vip_address(lab))
    return out


def flavor_row(p: dict[str, Any], server: str, label: str) -> dict[str, Any]:
    """The per-flavor comparison row, from a phase of "ours" on that flavor's lab."""
    return {"server": server, "version": label, "swaps": p["swaps"], "swaps_ok": p["swaps_ok"],
            "pause_ms": p["pause_ms"], "write_block_ms": p["write_block_ms"], "failed": p["failed"],
            "acked_writes": p["acked_writes"], "lost": p["lost"], "two_writable": p["two_writable"],
            "problems": p["problems"]}


def flavor_section(tmp: Path, server: str, args: argparse.Namespace, common: dict[str, Any], show: Any,
                   apps: list[Any], labs: list[Path]) -> dict[str, Any]:
    """``--flavor-swaps`` swaps of "ours" on a loopback lab of ``server``; its comparison row."""
    label = server_label(server)
    lab_dir = tmp / f"lab-{server}"
    labs.append(lab_dir)
    t = time.monotonic()
    lab = lab_up(lab_dir, server=server)
    app = start_wsgi(lab.config_path, tmp / f"app-{server}", workers=4, threads=8)
    apps.append(app)
    print(f"ours on {label} ({server}; lab up in {time.monotonic() - t:.1f} s):", flush=True)
    try:
        res = run_scenario(lab.config_path, app.url, swaps=args.flavor_swaps, pause=True, progress=show,
                           **common)
    finally:
        apps.remove(app)
        app.stop()
        labs.remove(lab_dir)
        lab_down(lab_dir)
    return flavor_row(phase(res, f"ours on {server}"), server, label)


def flavor_table(rows: list[dict[str, Any]]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:g}"
    lines = ["| server | swaps ok | pause window p50 / p95 / max | writes blocked p50 / max "
             "| failed requests | acknowledged writes | lost writes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        pm, wb = r["pause_ms"], r["write_block_ms"]
        lines.append(f"| {r['version']} (`{r['server']}`) | {r['swaps_ok']}/{r['swaps']} "
                     f"| {f(pm['p50'])} / {f(pm['p95'])} / {f(pm['max'])} ms "
                     f"| {f(wb['p50'])} / {f(wb['max'])} ms "
                     f"| {r['failed']} | {r['acked_writes']} | {r['lost']} |")
    return "\n".join(lines)


def parse_servers(values: list[str] | None) -> list[str]:
    """``--server a,b --server c`` -> [a, b, c]; default: every lab flavor, the host's first."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()] or list(FLAVORS)
    unknown = [n for n in names if n not in FLAVORS]
    if unknown:
        raise SystemExit(f"bench_swap: unknown server flavor {', '.join(unknown)}; "
                         f"use one of: {', '.join(FLAVORS)}")
    return list(dict.fromkeys(names))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swaps", type=int, default=20, help="swaps for ours and for no-pause (default 20)")
    ap.add_argument("--rate", type=float, default=250.0, help="requests/s, half writes (default 250)")
    ap.add_argument("--original", type=int, default=4, help="swaps with the 2012 sequence (default 4)")
    ap.add_argument("--vip-swaps", type=int, default=10, help="swaps with the vip method (root; default 10)")
    ap.add_argument("--no-vip", action="store_true", help="skip the vip section")
    ap.add_argument("--vip-subnet", help="hosts lab subnet inside 198.18.0.0/15 (default: the first free "
                                         f"of {BENCH_SUBNETS[0]}..{BENCH_SUBNETS[-1]})")
    ap.add_argument("--gap", type=float, default=0.3, help="seconds of plain load between swaps")
    ap.add_argument("--server", action="append", metavar="NAME[,NAME...]",
                    help=f"server flavors (default: all of {', '.join(FLAVORS)}); the first gets every "
                         "section, the others --flavor-swaps swaps of ours each")
    ap.add_argument("--flavor-swaps", type=int, default=10,
                    help="swaps of ours on each further flavor (default 10)")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this file")
    ap.add_argument("--quick", action="store_true",
                    help="4 + 4 + 1 + 4 (vip) swaps, 4 per further flavor (a few minutes)")
    args = ap.parse_args()
    args.servers = parse_servers(args.server)
    if args.quick:
        args.swaps, args.original = min(args.swaps, 4), min(args.original, 1)
        args.vip_swaps, args.flavor_swaps = min(args.vip_swaps, 4), min(args.flavor_swaps, 4)
    if args.swaps < 2 or args.rate < 1 or args.flavor_swaps < 1:
        ap.error("--swaps must be >= 2, --flavor-swaps >= 1 and --rate >= 1")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="roleswap-bench-"))
    lab_dir = tmp / "lab"
    apps: list[Any] = []
    labs: list[Path] = [lab_dir]
    results: dict[str, Any] = {
        "command": os.environ.get("BENCH_COMMAND") or "scripts/bench_swap.py " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "rate": args.rate, "write_ratio": 0.5, "app": "Flask on gunicorn, 4 workers x 8 threads (gthread)",
        "swaps": args.swaps, "original_swaps": args.original, "vip_swaps": args.vip_swaps,
        "servers": args.servers, "flavor_swaps": args.flavor_swaps,
    }
    try:
        main_label = server_label(args.servers[0])
        results["server"] = main_label
        lab = lab_up(lab_dir, server=args.servers[0])
        cfg = load_config(lab.config_path)
        app = start_wsgi(lab.config_path, tmp, workers=4, threads=8)
        apps.append(app)
        common = {"rate": args.rate, "gap": args.gap, "warmup": 1.0, "settle": 0.5}
        print(f"bench: {main_label}, {args.rate:g} req/s, {args.swaps} swaps ours + {args.swaps} no-pause + "
              f"{args.original} original (+ {args.vip_swaps} vip as root), lab in {tmp}", flush=True)

        def show(kind: str, what: object) -> None:
            if isinstance(what, SwapRun):
                state = "ok" if what.ok else f"FAILED {what.error[:100]}"
                pause = "-" if what.pause_ms is None else f"{what.pause_ms:.1f} ms"
                block = "-" if what.write_block_ms is None else f"{what.write_block_ms:.1f} ms"
                vip = "" if what.vip_move_ms is None else f", VIP moved in {what.vip_move_ms:.0f} ms"
                print(f"  {what.source}->{what.target} {state}: pause window {pause}, writes blocked {block}"
                      f"{vip}", flush=True)

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
        # the loopback lab and its app are stopped first: the vip section has the machine to itself
        apps.pop().stop()
        lab_down(labs.pop())
        results["vip"] = vip_section(tmp, args, common, show, apps, labs)
        rows = [flavor_row(results["ours"], args.servers[0], main_label)]
        for server in args.servers[1:]:
            rows.append(flavor_section(tmp, server, args, common, show, apps, labs))
        results["flavors"] = rows
    finally:
        for a in apps:
            a.stop()
        for d in labs:
            lab_down(d)
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - t0, 1)
    m = results["machine"]
    print(f"\nbench_swap: {results['command']}  ({m['nproc']} x {m['cpu']}, {results['seconds']} s)")
    print(f"load: {args.rate:g} req/s (half writes) on {results['app']}; server {results['server']}\n")
    print(table(results))
    print(f"\nper server flavor (ours, endpoint switch, loopback lab; {args.flavor_swaps} swaps each, "
          f"the first flavor's row is its 'ours' column above):\n")
    print(flavor_table(results["flavors"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nJSON written to {args.json}")
    bad = results["ours"]["problems"] + results["no_pause"]["problems"] + results["vip"].get("problems", [])
    bad += [f"{r['server']}: {p}" for r in results["flavors"][1:] for p in r["problems"]]
    if bad:
        print("\nproblems:\n  " + "\n  ".join(bad))
    if results.get("original", {}).get("problems"):
        print("\noriginal sequence (baseline, informational):\n  "
              + "\n  ".join(results["original"]["problems"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
