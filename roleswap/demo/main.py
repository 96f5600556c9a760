"""``scripts/demo``: two role swaps under live web traffic, then the proof.

Starts a lab (3 database servers of one flavor, ``--server``, + Redis) in a temporary
directory, the WSGI demo app (gunicorn, 4 workers) and a steady read/write load, swaps
db1 -> db2 and back while the load runs, and prints what users saw and what the databases hold.  Everything is
stopped (by PID) at the end, also on failure, Ctrl-C or SIGTERM.  Exit 0 only if every
request succeeded, no acknowledged write was lost and replication is healthy everywhere.

As root (with working network namespaces) the lab runs every server on a host of its
own with sshd and a floating IP: roleswap moves the VIP (``vip`` switch method) and the
app connects to the VIP.  Otherwise (or with ``--no-hosts``) the lab is on loopback and
roleswap publishes the new primary (``endpoint`` method) in the resume payload.  With
``--haproxy`` (no root needed) the loopback lab runs behind one HAProxy: the app connects
to its frontend and roleswap moves the writes backend's ready entry (``haproxy`` method).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from roleswap.demo.haproxylab import frontend, haproxy_problems, haproxy_unavailable, haproxy_version
from roleswap.demo.hostslab import DEMO_SUBNETS, hosts_unavailable, pick_subnet, vip_address, vip_problems
from roleswap.demo.load import Summary
from roleswap.demo.runner import AppServer, start_wsgi
from roleswap.demo.scenario import ScenarioResult, run_scenario
from roleswap.demo.swaps import SwapRun
from roleswap.lab import Lab, lab_down, lab_up
from roleswap.lab.flavors import DEFAULT_SERVER, FLAVORS, Server, get_server


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
    moved = _moved(r)
    return (f"  swap {r.source} -> {r.target}: ok  pause window {r.pause_ms:.1f} ms, writes blocked "
            f"{r.write_block_ms:.1f} ms{moved}, whole swap {r.total_ms:.0f} ms")


def _moved(r: SwapRun) -> str:
    if r.vip_move_ms is not None:
        return f", VIP moved in {r.vip_move_ms:.0f} ms"
    if r.haproxy_move_ms is not None:
        return f", HAProxy moved in {r.haproxy_move_ms:.0f} ms"
    return ""


def show_progress(con: Console) -> Callable[[str, Summary | SwapRun], None]:
    """The scenario's progress callback: the load line in place, one line per swap."""

    def progress(_kind: str, what: Summary | SwapRun) -> None:
        if isinstance(what, Summary):
            con.progress(_load_line(what))
        else:
            con.line(_swap_line(what))

    return progress


def _vip_line(res: ScenarioResult, vip: str, problems: list[str]) -> str:
    moves = ", ".join(f"{r.source}->{r.target} in {r.vip_move_ms:.0f} ms" for r in res.swaps
                      if r.vip_move_ms is not None)
    where = problems[0] if problems else f"now on {res.consistency.primary} only (the primary)"
    return f"  vip            {vip} moved {moves or 'never'}; {where}"


def _haproxy_line(res: ScenarioResult, where: str, problems: list[str]) -> str:
    moves = ", ".join(f"{r.source}->{r.target} in {r.haproxy_move_ms:.0f} ms" for r in res.swaps
                      if r.haproxy_move_ms is not None)
    now = problems[0] if problems else \
        f"its writes backend now routes to {res.consistency.primary} only (the primary)"
    return f"  haproxy        {where} moved {moves or 'never'}; {now}"


def report(res: ScenarioResult, workers: int, seconds: float, method: str = "endpoint",
           vip: str | None = None, extra_problems: list[str] | None = None,
           server: str | None = None, more_problems: list[str] | None = None,
           haproxy: str | None = None) -> list[str]:
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
        moved = _moved(r)
        out.append(f"  swap {r.source}->{r.target}   pause window {r.pause_ms or 0:.1f} ms{moved}, "
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
    if vip is not None:
        out.append(_vip_line(res, vip, extra_problems or []))
    if haproxy is not None:
        out.append(_haproxy_line(res, haproxy, extra_problems or []))
    for rec in res.recovered:
        out.append(f"  recovered      {rec}")
    problems = res.problems() + (extra_problems or []) + (more_problems or [])
    out.append("")
    if problems:
        out.append(f"FAIL ({seconds:.1f} s):")
        out += [f"  - {p}" for p in problems]
    else:
        on = f" on {server}" if server else ""
        out.append(f"PASS: {len(res.swaps)} swaps ({method} switch{on}) under {s.rate:.0f} req/s on "
                   f"gunicorn x{workers}: 0 failed requests, 0 lost writes ({seconds:.1f} s)")
    return out


def save_outputs(con: Console, res: ScenarioResult, title: str, plot: Path | None,
                 json_path: Path | None) -> list[str]:
    """``--json``: the result with every request; ``--plot``: its timeline PNG.  Returns problems."""
    problems = []
    try:
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({"title": title, **res.as_dict(records=True)}, default=str))
            con.line(f"  json           {json_path} (redraw the plot: python -m roleswap.demo.plot "
                     f"{json_path} --out DIR)")
        if plot is not None:
            from roleswap.demo.plot import timeline

            timeline(res, plot, title=title)
            con.line(f"  plot           {plot} ({plot.stat().st_size / 1024:.0f} KB): request latency "
                     "over time, the swaps' windows shaded")
    except Exception as e:  # the run's verdict still gets printed
        problems.append(f"could not write --json/--plot: {type(e).__name__}: {e}")
    return problems


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so `finally` tears everything down


def server_label(srv: Server) -> str:
    """"MariaDB 10.11.19-MariaDB-0+deb12u1" / "MySQL 9.7.4-2": what the report names."""
    engine = "MySQL" if srv.flavor.engine == "mysql" else "MariaDB"
    return f"{engine} {srv.version}"


def _start_lab(con: Console, lab_dir: Path, hosts_why_not: str | None, subnet: str | None,
               srv: Server, haproxy: bool = False) -> Lab:
    t = time.monotonic()
    what = f"{server_label(srv)} ({srv.flavor.name})"
    if haproxy:
        lab = lab_up(lab_dir, server=srv.flavor.name, haproxy=True)
        con.line(f"  lab            {what}: db1 primary, db2 + db3 replicas (GTID), redis, on 127.0.0.1, "
                 f"behind {haproxy_version()} (frontend {frontend(lab)}): up in {time.monotonic() - t:.1f} s")
        con.line(f"  switch         haproxy: roleswap moves the ready entry of HAProxy's writes backend over "
                 f"its runtime API, the app connects to {frontend(lab)}")
        return lab
    if hosts_why_not is None:
        subnet = subnet or pick_subnet(lab_dir, DEMO_SUBNETS)
        lab = lab_up(lab_dir, hosts=True, subnet=subnet, server=srv.flavor.name)
        con.line(f"  lab            {what}: db1 primary, db2 + db3 replicas (GTID), redis; each server "
                 f"on a host of its own (network namespace + sshd, {subnet}): up in "
                 f"{time.monotonic() - t:.1f} s")
        con.line(f"  switch         vip: roleswap moves {vip_address(lab)} over SSH, the app connects to it")
        return lab
    lab = lab_up(lab_dir, server=srv.flavor.name)
    con.line(f"  lab            {what}: db1 primary, db2 + db3 replicas (GTID), redis, on 127.0.0.1: "
             f"up in {time.monotonic() - t:.1f} s")
    con.line(f"  switch         endpoint: the app gets the new primary in the resume payload "
             f"(no VIP: {hosts_why_not})")
    return lab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=250.0, help="requests/s (default 250)")
    ap.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    ap.add_argument("--swaps", type=int, default=2, help="swaps, alternating db1->db2, db2->db1 (default 2)")
    ap.add_argument("--no-hosts", action="store_true",
                    help="loopback lab and endpoint switch even as root (default as root: hosts + VIP)")
    ap.add_argument("--haproxy", action="store_true",
                    help="loopback lab behind one HAProxy, haproxy switch: the app connects to HAProxy's "
                         "frontend (no root needed; needs the haproxy package)")
    ap.add_argument("--subnet", help="hosts lab subnet inside 198.18.0.0/15 (default: the first free of "
                                     f"{DEMO_SUBNETS[0]}..{DEMO_SUBNETS[-1]})")
    ap.add_argument("--server", default=DEFAULT_SERVER, choices=list(FLAVORS),
                    help=f"database server flavor (default {DEFAULT_SERVER}; others are fetched once "
                         "into the per-user cache, see `roleswap lab servers`)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument("--plot", type=Path, metavar="FILE",
                    help="write a PNG timeline of the run: every request's latency, held ones and failures "
                         "marked, each swap's pause and write-blocked windows shaded (needs matplotlib: "
                         "pip install 'roleswap[plot]')")
    ap.add_argument("--json", type=Path, metavar="FILE",
                    help="write the run's result with every request as JSON (redraw the timeline with "
                         "python -m roleswap.demo.plot FILE --out DIR)")
    args = ap.parse_args(argv)
    if args.subnet and (args.no_hosts or args.haproxy):
        ap.error("--subnet is for the hosts lab; drop --no-hosts / --haproxy or --subnet")
    if args.haproxy and (why := haproxy_unavailable()) is not None:
        ap.error(f"--haproxy: {why}")
    if not 1 <= args.swaps <= 50 or args.rate <= 0 or args.workers < 1:
        ap.error("--swaps must be 1-50, --rate > 0 and --workers >= 1")
    if args.plot is not None:
        from roleswap.demo.plot import PlotUnavailable, require

        try:
            require()  # before any lab starts
        except PlotUnavailable as e:
            ap.error(f"--plot: {e}")
    con = Console()
    t0 = time.monotonic()
    old_term = signal.signal(signal.SIGTERM, _sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="roleswap-demo-"))
    lab_dir = tmp / "lab"
    app: AppServer | None = None
    ok = False
    try:
        con.line(f"roleswap demo: swap the primary {args.swaps} time(s) under live web traffic")
        srv = get_server(args.server, lambda m: con.line(f"  fetch          {m}"))  # once, then cached
        why_not = "--haproxy" if args.haproxy else "--no-hosts" if args.no_hosts else hosts_unavailable()
        lab = _start_lab(con, lab_dir, why_not, args.subnet, srv, haproxy=args.haproxy)
        t = time.monotonic()
        app = start_wsgi(lab.config_path, tmp, workers=args.workers)
        con.line(f"  app            Flask on gunicorn, {args.workers} workers (gthread), intermission "
                 f"middleware, {app.url}: ready in {time.monotonic() - t:.1f} s")
        con.line(f"  load           {args.rate:.0f} req/s, half writes (POST /write), "
                 "half reads (GET /read/<id>)")

        res = run_scenario(lab.config_path, app.url, swaps=args.swaps, rate=args.rate, warmup=2.0,
                           gap=2.0, settle=0.5, partner="db2", progress=show_progress(con))
        con.line(_load_line(res.load))
        vip = vip_address(lab) if lab.hosts else None
        via = f"{haproxy_version()} {frontend(lab)}" if args.haproxy else None
        extra = vip_problems(lab, res.consistency.primary) if lab.hosts else \
            haproxy_problems(lab.config_path, res.consistency.primary) if args.haproxy else []
        method = "vip" if lab.hosts else "haproxy" if args.haproxy else "endpoint"
        title = (f"scripts/demo: {len(res.swaps)} swaps ({method} switch, {server_label(srv)}), "
                 f"{res.load.rate:.0f} req/s on gunicorn x{args.workers}\n{res.load.sent} requests, "
                 f"{res.load.held} held, {res.load.failed} failed")
        saved = save_outputs(con, res, title, args.plot, args.json)
        for line in report(res, args.workers, time.monotonic() - t0, method, vip, extra,
                           server=server_label(srv), more_problems=saved, haproxy=via):
            con.line(line)
        ok = not res.problems() and not extra and not saved
    except KeyboardInterrupt:
        con.line("interrupted")
    except Exception as e:
        con.line(f"FAIL: {type(e).__name__}: {e}")
        if app is not None:
            con.line(f"app log ({app.log_path}):\n{app.log_tail()}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # teardown must not be cut short
        if app is not None:
            app.stop()
        try:
            lab_down(lab_dir)
        except Exception as e:
            con.line(f"FAIL: teardown: {type(e).__name__}: {e}")
            ok = False
        if args.keep:
            con.line(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, old_term)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
