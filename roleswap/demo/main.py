"""``scripts/demo``: two role swaps under live web traffic, then the proof.

Starts a lab (3 MariaDB + Redis) in a temporary directory, the WSGI demo app
(gunicorn, 4 workers) and a steady read/write load, swaps db1 -> db2 and back while
the load runs, and prints what users saw and what the databases hold.  Everything is
stopped (by PID) at the end, also on failure or Ctrl-C.  Exit 0 only if every request
succeeded, no acknowledged write was lost and replication is healthy everywhere.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from roleswap.demo.load import Summary
from roleswap.demo.runner import AppServer, start_wsgi
from roleswap.demo.scenario import ScenarioResult, run_scenario
from roleswap.demo.swaps import SwapRun
from roleswap.lab import lab_down, lab_up


class Console:
    """Result lines, plus one progress line that rewrites itself on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.lock = threading.Lock()
        self.last_plain = 0.0
        self.dirty = False

    def line(self, text: str) -> None:
        with self.lock:
            if self.dirty:
                sys.stdout.write("\r\x1b[K")
                self.dirty = False
            print(text, flush=True)

    def progress(self, text: str) -> None:
        with self.lock:
            if self.tty:
                sys.stdout.write("\r\x1b[K" + text)
                sys.stdout.flush()
                self.dirty = True
            elif time.monotonic() - self.last_plain >= 2.0:
                self.last_plain = time.monotonic()
                print(text, flush=True)


def _load_line(s: Summary) -> str:
    return (f"  load: {s.sent:5d} sent  {s.ok:5d} ok  {s.failed} failed  {s.held:3d} held  "
            f"{s.rate:5.0f} req/s  p99 {s.p99_ms:5.1f} ms  max {s.max_ms:6.1f} ms")


def _swap_line(r: SwapRun) -> str:
    if not r.ok:
        why = r.error.splitlines()[0] if r.error else ""
        return f"  swap {r.source} -> {r.target}: FAILED (exit {r.exit_code}) {why}"
    return (f"  swap {r.source} -> {r.target}: ok  pause window {r.pause_ms:.1f} ms, writes blocked "
            f"{r.write_block_ms:.1f} ms, whole swap {r.total_ms:.0f} ms")


def report(res: ScenarioResult, workers: int, seconds: float) -> list[str]:
    s = res.load
    c = res.consistency
    slow = s.slowest
    out = ["", "report"]
    out.append(f"  requests       {s.sent} sent at {s.rate:.0f} req/s ({s.writes_sent} writes), "
               f"{s.held} held, {s.failed} failed")
    if slow is not None:
        held = f", held {slow.held_ms:.1f} ms of it" if slow.held_ms is not None else ""
        out.append(f"  slowest        {slow.latency_ms:.1f} ms ({slow.kind}{held}); "
                   f"p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms")
    for r in res.swaps:
        if not r.ok:
            out.append(f"  swap {r.source}->{r.target}   FAILED: {(r.error or '?').splitlines()[0]}")
            continue
        held_recs = res.held_during(r)
        answered = "all answered after the resume" if all(h.ok for h in held_recs) else "NOT all answered"
        out.append(f"  swap {r.source}->{r.target}   pause window {r.pause_ms or 0:.1f} ms, "
                   f"{len(held_recs)} request(s) held, {answered}")
    primary = c.primary or "?"
    present = c.acked - len(c.lost.get(primary, []))
    out.append(f"  writes         {c.acked} acknowledged, {present} present on {primary} (the primary now), "
               f"lost {c.lost_total}")
    nodes = " ".join(n.name for n in c.nodes)
    sums = {n.checksum for n in c.nodes}
    gtids = {n.gtid for n in c.nodes}
    healthy = all(n.threads_ok for n in c.nodes)
    out.append(f"  replication    {nodes}: {'same' if len(sums) == 1 else 'DIFFERENT'} CHECKSUM TABLE, "
               f"GTID {'/'.join(sorted(gtids))}, threads {'running' if healthy else 'NOT running'}")
    w = res.writable
    verdict = "never more than one server" if not w.overlaps else "TWO servers at once"
    out.append(f"  writable       {verdict} "
               f"({w.samples} read_only samples; none writable for at most {w.max_no_writable_ms:.0f} ms)")
    for rec in res.recovered:
        out.append(f"  recovered      {rec}")
    problems = res.problems()
    out.append("")
    if problems:
        out.append(f"FAIL ({seconds:.1f} s):")
        out += [f"  - {p}" for p in problems]
    else:
        out.append(f"PASS: {len(res.swaps)} swaps under {s.rate:.0f} req/s on gunicorn x{workers}: "
                   f"0 failed requests, 0 lost writes ({seconds:.1f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=250.0, help="requests/s (default 250)")
    ap.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    ap.add_argument("--swaps", type=int, default=2, help="swaps, alternating db1->db2, db2->db1 (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = ap.parse_args(argv)
    con = Console()
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="roleswap-demo-"))
    lab_dir = tmp / "lab"
    app: AppServer | None = None
    ok = False
    try:
        con.line("roleswap demo: swap the primary twice under live web traffic")
        t = time.monotonic()
        lab = lab_up(lab_dir)
        con.line("  lab            db1 primary, db2 + db3 replicas (GTID), redis: "
                 f"up in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        app = start_wsgi(lab.config_path, tmp, workers=args.workers)
        con.line(f"  app            Flask on gunicorn, {args.workers} workers (gthread), intermission "
                 f"middleware, {app.url}: ready in {time.monotonic() - t:.1f} s")
        con.line(f"  load           {args.rate:.0f} req/s, half writes (POST /write), "
                 "half reads (GET /read/<id>)")

        def progress(kind: str, what: Summary | SwapRun) -> None:
            if isinstance(what, Summary):
                con.progress(_load_line(what))
            else:
                con.line(_swap_line(what))

        res = run_scenario(lab.config_path, app.url, swaps=args.swaps, rate=args.rate, warmup=2.0,
                           gap=2.0, settle=0.5, partner="db2", progress=progress)
        con.line(_load_line(res.load))
        for line in report(res, args.workers, time.monotonic() - t0):
            con.line(line)
        ok = not res.problems()
    except KeyboardInterrupt:
        con.line("interrupted")
    except Exception as e:
        con.line(f"FAIL: {type(e).__name__}: {e}")
        if app is not None:
            con.line(f"app log ({app.log_path}):\n{app.log_tail()}")
    finally:
        if app is not None:
            app.stop()
        lab_down(lab_dir)
        if args.keep:
            con.line(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
