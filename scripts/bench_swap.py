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

and a loopback lab behind one HAProxy (scripts/bench_haproxy.py; no root needed):

  ours, haproxy  the app connects to HAProxy's frontend; roleswap with the haproxy method
                 --haproxy-swaps times; also the move time (maint on --from -> ready on --to
                 and a new connection through the frontend reaches --to)

All of that runs on the first --server flavor.  Then, per further flavor, a loopback lab of
that flavor (endpoint switch) and, as root, a hosts lab of it (vip switch) get --flavor-swaps
swaps of "ours" each under the same load, and one table compares the flavors and methods:
pause window, writes blocked, VIP move, failed requests and lost writes.

Scale (issue 13; scripts/bench_load.py and scripts/bench_topo.py):

  write rate   --rate-swaps swaps of ours at each of --rates writes/s (all-write load), the
               rate reached and what saturated; then --big-trx-swaps swaps with a
               --big-trx-rows transaction in flight when the pause starts
  replicas     --replica-swaps swaps of ours on labs of each of --replica-counts replicas:
               swap total, pause window, repoint step and whether it sat inside the pause

Before any load, the swap and rate sections measure the machine's own floor on their lab
(scripts/bench_floor.py: Redis and MySQL round trips hot and idle, a wake-up, a fork): the
pause window of two machines only compares next to those figures.

Options: scripts/bench_swap.py --help.
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

from bench_floor import floor_line, measure_floor  # noqa: E402
from bench_haproxy import haproxy_section  # noqa: E402
from bench_load import write_rate_section, write_rate_table  # noqa: E402
from bench_topo import (  # noqa: E402
    flavor_row,
    flavor_section,
    flavor_table,
    replicas_section,
    replicas_table,
    vip_section,
)
from bench_window import main_table, window_profile, window_table  # noqa: E402

from roleswap.config import load_config  # noqa: E402
from roleswap.demo.hostslab import BENCH_SUBNETS  # noqa: E402
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


# phases whose every request is kept in the JSON, for the timeline PNGs (scripts/bench
# draws them with `python -m roleswap.demo.plot`)
TIMELINE_TITLES = {"ours": "scripts/bench: ours (endpoint switch)",
                   "ours, vip": "scripts/bench: ours, vip (a floating IP moved over SSH)",
                   "ours, haproxy": "scripts/bench: ours, haproxy (HAProxy's writes backend moved)"}


def phase(res: ScenarioResult, name: str) -> dict[str, Any]:
    ok = [s for s in res.swaps if s.ok]
    pauses = [s.pause_ms for s in ok if s.pause_ms is not None]
    blocks = [s.write_block_ms for s in ok if s.write_block_ms is not None]
    moves = [s.vip_move_ms for s in ok if s.vip_move_ms is not None]
    hmoves = [s.haproxy_move_ms for s in ok if s.haproxy_move_ms is not None]
    held = [r.held_ms for r in res.records if r.held_ms is not None]
    failed_per_swap = [sum(1 for r in res.records if not r.ok and s.started <= r.start <= s.ended + 1.0)
                       for s in res.swaps]
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    def spread(v: list[float]) -> dict[str, float | None]:
        return {"p50": r(pct(v, 0.5)), "p95": r(pct(v, 0.95)), "max": r(max(v, default=None))}

    return {
        "name": name, "swaps": len(res.swaps), "swaps_ok": len(ok), "pause_ms": spread(pauses),
        "write_block_ms": spread(blocks), "vip_move_ms": spread(moves), "haproxy_move_ms": spread(hmoves),
        "held_requests": len(held), "held_added_ms": {"p50": r(pct(held, 0.5)), "p99": r(pct(held, 0.99)),
                                                      "max": r(max(held, default=None))},
        "requests": res.load.sent, "rate": round(res.load.rate, 1), "failed": res.load.failed,
        "failed_per_swap_max": max(failed_per_swap, default=0), "failures": res.load.failures,
        "latency_ms": {"p50": r(res.load.p50_ms), "p99": r(res.load.p99_ms), "max": r(res.load.max_ms)},
        "acked_writes": res.consistency.acked, "lost": res.consistency.lost_total,
        "two_writable": res.writable.overlaps, "consistent": not res.consistency.problems,
        "problems": res.problems(allow_failed_requests=name == "no pause"),
        "per_swap": [s.as_dict() for s in res.swaps],
        **({"scenario": {**res.as_dict(records=True), "title": TIMELINE_TITLES[name]}}
           if name in TIMELINE_TITLES else {}),
    }


def parse_servers(values: list[str] | None) -> list[str]:
    """``--server a,b --server c`` -> [a, b, c]; default: every lab flavor, the host's first."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()] or list(FLAVORS)
    unknown = [n for n in names if n not in FLAVORS]
    if unknown:
        raise SystemExit(f"bench_swap: unknown server flavor {', '.join(unknown)}; "
                         f"use one of: {', '.join(FLAVORS)}")
    return list(dict.fromkeys(names))


def int_list(text: str) -> list[int]:
    """``"250,1000,2000"`` -> [250, 1000, 2000] (an argparse type)."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return out


SECTIONS = ("swap", "rate", "replicas", "vip", "haproxy", "flavors")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swaps", type=int, default=20, help="swaps for ours and for no-pause (default 20)")
    ap.add_argument("--rate", type=float, default=250.0, help="requests/s, half writes (default 250)")
    ap.add_argument("--original", type=int, default=4, help="swaps with the 2012 sequence (default 4)")
    ap.add_argument("--host-agent-swaps", type=int, default=None,
                    help="swaps of ours with the app's workers attached to one intermission host-agent "
                         "(default: as --swaps; 0: none)")
    ap.add_argument("--vip-swaps", type=int, default=10, help="swaps with the vip method (root; default 10)")
    ap.add_argument("--no-vip", action="store_true", help="skip every vip run (section and flavor columns)")
    ap.add_argument("--vip-subnet", help="hosts lab subnet inside 198.18.0.0/15 (default: the first free "
                                         f"of {BENCH_SUBNETS[0]}..{BENCH_SUBNETS[-1]})")
    ap.add_argument("--haproxy-swaps", type=int, default=10,
                    help="swaps with the haproxy method, the app connecting through HAProxy (default 10)")
    ap.add_argument("--client", choices=("httpx", "stdlib"), default="httpx",
                    help="the load generator's HTTP client in the swap, vip, haproxy, replica and flavor "
                         "sections (default httpx; stdlib costs the generator about a third of the CPU)")
    ap.add_argument("--gap", type=float, default=0.3, help="seconds of plain load between swaps")
    ap.add_argument("--server", action="append", metavar="NAME[,NAME...]",
                    help=f"server flavors (default: all of {', '.join(FLAVORS)}); the first gets every "
                         "section, the others --flavor-swaps swaps of ours each, endpoint and vip")
    ap.add_argument("--flavor-swaps", type=int, default=10,
                    help="swaps of ours on each further flavor, per switch method (default 10)")
    ap.add_argument("--rates", type=int_list, default=[250, 1000, 2000], metavar="W,W,...",
                    help="write-rate section: writes/s to ask for (all-write load; default 250,1000,2000)")
    ap.add_argument("--rate-swaps", type=int, default=6, help="swaps of ours per write rate (default 6)")
    ap.add_argument("--rate-workers", type=int, default=4, help="app workers for the write rates (default 4)")
    ap.add_argument("--rate-threads", type=int, default=16,
                    help="threads per app worker for the write rates (default 16)")
    ap.add_argument("--rate-concurrency", type=int, default=0,
                    help="load-generator connections for the write rates (default: rate/25, 16-256)")
    ap.add_argument("--big-trx-rows", type=int, default=10_000,
                    help="rows of the transaction in flight at the pause (default 10000)")
    ap.add_argument("--big-trx-swaps", type=int, default=3,
                    help="swaps with that transaction, committed in turn as the pause begins, as the fence "
                         "begins, just after the fence (default 3; 0: none)")
    ap.add_argument("--replica-counts", type=int_list, default=[2, 4, 6], metavar="N,N,...",
                    help="replicas section: lab sizes, in replicas (default 2,4,6)")
    ap.add_argument("--replica-swaps", type=int, default=6, help="swaps of ours per lab size (default 6)")
    ap.add_argument("--sections", default=",".join(SECTIONS), metavar="S,S,...",
                    help=f"sections to run (default all: {','.join(SECTIONS)}); swap = ours, no pause and "
                         "original on the first flavor")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this file")
    ap.add_argument("--quick", action="store_true",
                    help="4 + 4 + 1 + 4 (vip) + 4 (haproxy) swaps, 4 per further flavor and method, 2 per "
                         "write rate, 2 per replica count (a few minutes)")
    args = ap.parse_args()
    args.servers = parse_servers(args.server)
    args.sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    if set(args.sections) - set(SECTIONS):
        ap.error(f"--sections: unknown {', '.join(sorted(set(args.sections) - set(SECTIONS)))}; "
                 f"use {','.join(SECTIONS)}")
    if args.host_agent_swaps is None:
        args.host_agent_swaps = args.swaps
    if args.quick:
        args.swaps, args.original = min(args.swaps, 4), min(args.original, 1)
        args.host_agent_swaps = min(args.host_agent_swaps, 4)
        args.vip_swaps, args.flavor_swaps = min(args.vip_swaps, 4), min(args.flavor_swaps, 4)
        args.haproxy_swaps = min(args.haproxy_swaps, 4)
        args.rate_swaps, args.replica_swaps = min(args.rate_swaps, 2), min(args.replica_swaps, 2)
    if args.swaps < 2 or args.rate < 1 or args.flavor_swaps < 1:
        ap.error("--swaps must be >= 2, --flavor-swaps >= 1 and --rate >= 1")
    if args.rate_swaps < 1 or args.replica_swaps < 1 or args.big_trx_swaps < 0 or args.big_trx_rows < 1:
        ap.error("--rate-swaps and --replica-swaps must be >= 1, --big-trx-swaps >= 0, --big-trx-rows >= 1")
    if max(args.replica_counts) > 8:
        ap.error("--replica-counts: a lab has at most 8 replicas")
    return args


def show(kind: str, what: object) -> None:
    if isinstance(what, SwapRun):
        state = "ok" if what.ok else f"FAILED {what.error[:100]}"
        pause = "-" if what.pause_ms is None else f"{what.pause_ms:.1f} ms"
        block = "-" if what.write_block_ms is None else f"{what.write_block_ms:.1f} ms"
        moved = "" if what.vip_move_ms is None else f", VIP moved in {what.vip_move_ms:.0f} ms"
        moved += "" if what.haproxy_move_ms is None else f", HAProxy moved in {what.haproxy_move_ms:.0f} ms"
        total = "" if what.total_ms is None else f", total {what.total_ms:.0f} ms"
        print(f"  {what.source}->{what.target} {state}: pause window {pause}, writes blocked {block}"
              f"{moved}{total}", flush=True)


def swap_sections(lab: Lab, app_dir: Path, args: argparse.Namespace, common: dict[str, Any],
                  results: dict[str, Any]) -> None:
    """ours, no pause and the 2012 sequence on the main lab, with the default demo app."""
    cfg = load_config(lab.config_path)
    app = start_wsgi(lab.config_path, app_dir, workers=4, threads=8)
    try:
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
            return SwapRun(src, dst, 0 if o.ok else 1, t, time.monotonic(), ok=o.ok, pause_ms=o.pause_ms,
                           write_block_ms=o.write_block_ms, total_ms=o.total_ms, error=o.error)

        if args.original > 0:
            print("original 2012 sequence:", flush=True)
            orig = run_scenario(lab.config_path, app.url, swaps=args.original, pause=True, swapper=original,
                                progress=show, **common)
            results["original"] = phase(orig, "original 2012")
    finally:
        app.stop()
    if args.host_agent_swaps > 0:  # the same app, its 4 workers attached to one host agent
        happ = start_wsgi(lab.config_path, app_dir / "host-agent", workers=4, threads=8, host_agent=True)
        try:
            print("ours, host agent:", flush=True)
            res = run_scenario(lab.config_path, happ.url, swaps=args.host_agent_swaps, pause=True,
                               progress=show, **common)
            results["ours_host"] = phase(res, "ours, host agent")
        finally:
            happ.stop()
    o50 = results.get("original", {}).get("pause_ms", {}).get("p50")
    u50 = results["ours"]["pause_ms"]["p50"]
    results["ratios"] = {
        "pause_original_over_ours": round(o50 / u50, 1) if o50 and u50 else None,
        "failed_ours": results["ours"]["failed"], "failed_no_pause": results["no_pause"]["failed"],
    }


def run_all(args: argparse.Namespace, tmp: Path, results: dict[str, Any], apps: list[Any],
            labs: list[Path]) -> None:
    sections = args.sections
    common = {"rate": args.rate, "gap": args.gap, "warmup": 1.0, "settle": 0.5, "client": args.client}
    no_rate = {k: v for k, v in common.items() if k != "rate"}
    main_label = server_label(args.servers[0])
    results["server"] = main_label
    print(f"bench: {main_label}, sections {','.join(sections)}; {args.rate:g} req/s, {args.swaps} swaps ours "
          f"+ {args.swaps} no-pause + {args.original} original (+ {args.vip_swaps} vip as root) + "
          f"{args.haproxy_swaps} haproxy; write rates "
          f"{args.rates}; replicas {args.replica_counts}; lab in {tmp}", flush=True)
    if "swap" in sections or "rate" in sections:
        lab_dir = tmp / "lab"
        labs.append(lab_dir)
        lab = lab_up(lab_dir, server=args.servers[0])
        results["machine"]["floor"] = measure_floor(lab)  # before any load: the box's own costs
        print(floor_line(results["machine"]["floor"]), flush=True)
        if "swap" in sections:
            swap_sections(lab, tmp, args, common, results)
        if "rate" in sections:
            results["write_rate"] = write_rate_section(lab, tmp / "rate-app", args, show, phase, no_rate)
        lab_down(labs.pop())  # each next section has the machine to itself
    if "replicas" in sections:
        results["replicas"] = replicas_section(tmp, args, show, phase, common, apps, labs)
    if "vip" in sections:
        results["vip"] = vip_section(tmp, args.servers[0], args.vip_swaps, args, common, show, phase, apps,
                                     labs)
    if "haproxy" in sections:
        results["haproxy"] = haproxy_section(tmp, args.servers[0], args.haproxy_swaps, common, show, phase,
                                             apps, labs)
    if "flavors" in sections:
        rows = [flavor_row(results.get("ours", {"skipped": "the swap section was not run"}), args.servers[0],
                           main_label, results.get("vip", {"skipped": "the vip section was not run"}))]
        for server in args.servers[1:]:
            rows.append(flavor_section(tmp, server, server_label(server), args, common, show, phase, apps,
                                       labs))
        results["flavors"] = rows


def main() -> int:
    args = parse_args()
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="roleswap-bench-"))
    apps: list[Any] = []
    labs: list[Path] = []
    results: dict[str, Any] = {
        "command": os.environ.get("BENCH_COMMAND") or "scripts/bench_swap.py " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "rate": args.rate, "write_ratio": 0.5, "app": "Flask on gunicorn, 4 workers x 8 threads (gthread)",
        "swaps": args.swaps, "original_swaps": args.original, "vip_swaps": args.vip_swaps,
        "haproxy_swaps": args.haproxy_swaps, "client": args.client, "servers": args.servers,
        "flavor_swaps": args.flavor_swaps, "sections": args.sections,
        "rates": args.rates, "rate_swaps": args.rate_swaps, "big_trx_rows": args.big_trx_rows,
        "big_trx_swaps": args.big_trx_swaps, "replica_counts": args.replica_counts,
        "replica_swaps": args.replica_swaps,
    }
    try:
        run_all(args, tmp, results, apps, labs)
    finally:
        for a in apps:
            a.stop()
        for d in labs:
            lab_down(d)
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - t0, 1)
    report(args, results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nJSON written to {args.json}")
    bad = [p for k in ("ours", "ours_host", "no_pause", "vip", "haproxy")
           for p in results.get(k, {}).get("problems", [])]
    bad += [p for p in results.get("write_rate", {}).get("big_trx", {}).get("problems", [])]
    bad += [p for r in results.get("write_rate", {}).get("rates", []) for p in r["problems"]]
    bad += [p for r in results.get("replicas", {}).get("rows", []) for p in r["problems"]]
    bad += [f"{r['server']}: {p}" for r in results.get("flavors", [])[1:]
            for p in r["problems"] + r["vip"]["problems"]]
    if bad:
        print("\nproblems:\n  " + "\n  ".join(bad))
    if results.get("original", {}).get("problems"):
        print("\noriginal sequence (baseline, informational):\n  "
              + "\n  ".join(results["original"]["problems"]))
    return 1 if bad else 0


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"\nbench_swap: {results['command']}  ({m['nproc']} x {m['cpu']}, {results['seconds']} s)")
    if any(k in results for k in ("ours", "vip", "haproxy")):
        print(f"load: {args.rate:g} req/s (half writes) on {results['app']}, client {args.client}; "
              f"server {results['server']}")
        if "floor" in m:
            print(floor_line(m["floor"]))
        print()
        print(main_table(results))
    names = {"ours": "ours", "ours_host": "ours, host agent", "vip": "ours, vip",
             "haproxy": "ours, haproxy"}
    windows = {k: window_profile(results[k]) for k in names
               if isinstance(results.get(k), dict) and "per_swap" in results[k]}
    if windows:
        results["window_profile"] = windows
        print("\nthe pause window step by step (p50; 'between steps' = the runner's own time: one "
              "journal write per step boundary, its reply read with the next; events):\n")
        print(window_table({names[k]: v for k, v in windows.items()}))
    if "write_rate" in results:
        w = results["write_rate"]
        print(f"\nwrite rate (ours, endpoint switch, {args.rate_swaps} swaps per rate; all-write load on "
              f"{w['app']}, client {w['client']}; CPU in % of one core while the load ran):\n")
        print(write_rate_table(w))
    if "replicas" in results:
        print(f"\nreplicas (ours, endpoint switch, {args.replica_swaps} swaps per lab size, {args.rate:g} "
              "req/s half writes; repoint placement from the swap's step order and windows):\n")
        print(replicas_table(results["replicas"]))
    if "flavors" in results:
        print(f"\nper server flavor (ours; endpoint: loopback lab, vip: hosts lab; {args.flavor_swaps} swaps "
              f"each; the first flavor's rows are its 'ours' and 'ours, vip' columns above):\n")
        print(flavor_table(results["flavors"]))


if __name__ == "__main__":
    sys.exit(main())
