"""Write-rate bench section (issue 13), run by scripts/bench_swap.py.

"ours" swaps under all-write load at each --rates writes/s (the demo app behind
intermission, as in the other sections, with --rate-workers x --rate-threads and the
load generator's lighter stdlib client), with what the machine reached and what
saturated: CPU of the load generator (this process), the app workers and MariaDB,
read from /proc while the load ran, and the whole host's busy share.

Then --big-trx-swaps swaps during which a direct client (the application account) holds
a --big-trx-rows transaction open on the primary and commits it, in turn, as the pause
begins (the intermission lease is in Redis), as the fence begins (the pause step is done)
or just after the fence (read_only is set): it must be in flight at the pause start
(checked against the swap's ``windows``), and afterwards either committed (acknowledged)
and present on every server, or refused by read_only and absent.  An acknowledged commit
missing anywhere is a lost write.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
from bench_topo import Swapped, f, swap_events

from intermission.controller import Controller
from roleswap.config import load_config
from roleswap.demo.db import TABLE
from roleswap.demo.runner import AppServer, descendants, start_wsgi
from roleswap.demo.scenario import ScenarioResult, run_scenario
from roleswap.demo.swaps import SwapRun
from roleswap.demo.verify import node_conn
from roleswap.lab import Lab

HZ = os.sysconf("SC_CLK_TCK")
Phase = Callable[[ScenarioResult, str], dict[str, Any]]


# ------------------------------------------------------------------ CPU accounting
def _cpu_s(pids: list[int]) -> float:
    t = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])  # utime + stime (this process and its threads)
        except (OSError, IndexError, ValueError):
            pass
    return t / HZ


def _host() -> tuple[float, float]:
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(v[:8]) / HZ, (v[3] + v[4]) / HZ  # total (no guest), idle + iowait


class CpuMeter:
    """CPU used by the load generator (this process), the app and MariaDB between the first
    and the last :meth:`tick` (the scenario's progress ticks: while the load runs)."""

    def __init__(self, app: AppServer, lab: Lab) -> None:
        self.groups = {"generator": [os.getpid()], "app": [app.pid, *descendants(app.pid)],
                       "mariadb": [n.pid for n in lab.nodes if n.is_db],
                       "redis": [n.pid for n in lab.nodes if n.kind == "redis"]}
        self.first: tuple[float, dict[str, float], tuple[float, float]] | None = None
        self.last: tuple[float, dict[str, float], tuple[float, float]] | None = None

    def tick(self, *_: object) -> None:
        snap = (time.monotonic(), {k: _cpu_s(v) for k, v in self.groups.items()}, _host())
        if self.first is None:
            self.first = snap
        self.last = snap

    def report(self) -> dict[str, Any]:
        if self.first is None or self.last is None or self.last[0] - self.first[0] < 0.5:
            return {}
        dt = self.last[0] - self.first[0]
        out: dict[str, Any] = {f"{k}_pct": round(100 * (self.last[1][k] - self.first[1][k]) / dt)
                               for k in self.groups}
        total = self.last[2][0] - self.first[2][0]
        idle = self.last[2][1] - self.first[2][1]
        out["host_busy_pct"] = round(100 * (1 - idle / total)) if total > 0 else None
        out["cores"] = os.cpu_count()
        out["seconds"] = round(dt, 1)
        return out


def steady_rate(res: ScenarioResult) -> float:
    """Writes/s sent between swaps (a swap's pause and catch-up slow the overall rate down)."""
    if not res.records:
        return 0.0
    spans = [(s.started, s.ended) for s in res.swaps]
    t0, t1 = min(r.start for r in res.records), max(r.start for r in res.records)
    busy = sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in spans)
    n = sum(1 for r in res.records if r.kind == "write" and not any(a <= r.start <= b for a, b in spans))
    return n / (t1 - t0 - busy) if t1 - t0 - busy > 0 else 0.0


def saturation(asked: float, achieved: float, cpu: dict[str, Any], concurrency: int, app_threads: int,
               mean_latency_ms: float) -> str:
    """What limited the rate, from the CPU shares and Little's law (in flight = rate x latency)."""
    if achieved >= 0.95 * asked:
        return "not saturated (reached the asked rate)"
    in_flight = achieved * mean_latency_ms / 1000
    shares = ", ".join(f"{k} {cpu.get(k + '_pct', '?')}%" for k in ("app", "mariadb", "generator"))
    if (cpu.get("host_busy_pct") or 0) >= 90:
        top = max(("app", "mariadb", "generator"), key=lambda k: cpu.get(k + "_pct") or 0)
        return (f"host CPU: {cpu['host_busy_pct']}% of {cpu.get('cores')} cores busy (of one core: "
                f"{shares}; the rest is other work on the box); the largest share is {top}")
    if (cpu.get("generator_pct") or 0) >= 90:
        return f"load generator: one Python process at {cpu['generator_pct']}% of a core (GIL)"
    if in_flight >= 0.9 * app_threads:
        return f"app workers: ~{in_flight:.0f} requests in flight for {app_threads} threads ({shares})"
    if in_flight >= 0.9 * concurrency:
        return (f"load generator concurrency: its {concurrency} connections all waiting "
                f"(mean latency {mean_latency_ms:.1f} ms; {shares})")
    return f"unclear ({shares}, host {cpu.get('host_busy_pct')}% busy, ~{in_flight:.0f} in flight)"


# ------------------------------------------------------------------ the 10,000-row transaction
AT_LABEL = {"pause": "as the pause began", "fence": "as the fence began",
            "after-fence": "just after the fence"}


class BigTrxSwapper:
    """Before each swap: a direct client (the application account, which cannot bypass
    read_only) opens a transaction on the primary and inserts ``rows`` rows; it commits when
    the pause begins (``at="pause"``: the intermission lease appears in Redis), when the
    fence begins (``at="fence"``: the pause step is done) or right after it (``at="after-fence"``:
    the fence step is done, read_only is set).  One trial per swap, ``ats`` in turn."""

    TRIGGER = {"pause": "pre-sync", "fence": "pause", "after-fence": "fence"}  # commit after this step

    def __init__(self, config_path: Path | str, rows: int,
                 ats: tuple[str, ...] = ("pause", "fence", "after-fence")) -> None:
        self.config_path = config_path
        self.cfg = load_config(config_path)
        self.rows, self.ats = rows, ats
        self.trials: list[dict[str, Any]] = []
        self.done: list[Swapped] = []

    def _connect(self, name: str) -> pymysql.connections.Connection[Any]:
        s, lab = self.cfg.server(name), self.cfg.lab
        assert lab is not None
        kwargs: dict[str, Any] = {} if self.cfg.tls else {"ssl_disabled": True}
        return pymysql.connect(host=s.host, port=s.port, user=lab.app_user, database=lab.database,
                               password=lab.app_password.reveal().encode(), autocommit=False,
                               read_timeout=30, write_timeout=30, charset="utf8mb4", **kwargs)

    def __call__(self, source: str, target: str) -> SwapRun:
        at = self.ats[len(self.trials) % len(self.ats)]
        tag = "bt" + uuid.uuid4().hex[:12]
        trial: dict[str, Any] = {"at": at, "tag": tag, "rows": self.rows, "from": source, "to": target}
        conn = self._connect(source)
        ctrl = Controller(self.cfg.redis_url.reveal() if self.cfg.redis_url else "", self.cfg.scope)
        t = time.monotonic()
        conn.begin()
        with conn.cursor() as cur:
            for i0 in range(0, self.rows, 1000):
                n = min(1000, self.rows - i0)
                values = ", ".join(["(%s, @@server_id)"] * n)
                cur.execute(f"INSERT INTO {TABLE} (k, server_id) VALUES {values}",
                            [f"{tag}{i:08d}" for i in range(i0, i0 + n)])
        opened = time.monotonic()
        trial["insert_ms"] = round((opened - t) * 1000, 1)
        marks: dict[str, float] = {}

        def on_step(ev: dict[str, Any]) -> None:
            if ev.get("name") != self.TRIGGER[at] or ev.get("status") != "done" or "sent" in marks:
                return
            if at == "pause":  # the next step is the pause: commit once its lease is in Redis
                deadline = time.monotonic() + 2.0
                while ctrl.read().lease is None and time.monotonic() < deadline:
                    time.sleep(0.0005)
            marks["sent"] = time.monotonic()
            try:
                conn.commit()
                trial["commit"] = "acknowledged"
            except pymysql.MySQLError as e:
                code = e.args[0] if e.args and isinstance(e.args[0], int) else None
                trial["commit"] = "refused" if code in (1290, 1836) else "error"
                trial["commit_error"] = f"{code}: {str(e.args[-1])[:120]}"
            marks["back"] = time.monotonic()

        s = swap_events(self.config_path, source, target, on_step=on_step)
        if "sent" not in marks:  # the swap never got there: not in flight, drop it
            conn.rollback()
            trial["commit"] = "not sent (the swap stopped before its pause)"
        conn.close()
        pause, block = s.windows.get("pause"), s.windows.get("write_block")
        if pause and "sent" in marks:
            def rel(x: float) -> float:
                return round((x - pause[0]) * 1000, 2)
            trial.update(open_before_pause_ms=rel(opened), commit_sent_ms=rel(marks["sent"]),
                         commit_returned_ms=rel(marks["back"]),
                         fence_start_ms=rel(block[0]) if block else None,
                         in_flight=opened < pause[0] < marks["back"])
        else:
            trial["in_flight"] = False
        self.trials.append(trial)
        self.done.append(s)
        return s.run

    def verify(self) -> list[str]:
        """After the scenario (replicas caught up): each trial's rows on every server."""
        problems: list[str] = []
        db = self.cfg.lab.database if self.cfg.lab else "app"
        for name in self.cfg.servers:
            conn = node_conn(self.cfg, name)
            try:
                with conn.cursor(pymysql.cursors.Cursor) as cur:
                    for tr in self.trials:
                        cur.execute(f"SELECT COUNT(*) FROM `{db}`.{TABLE} WHERE k LIKE %s",
                                    (tr["tag"] + "%",))
                        tr.setdefault("present", {})[name] = int((cur.fetchone() or (0,))[0])
            finally:
                conn.close()
        for tr in self.trials:
            counts = set(tr.get("present", {}).values())
            want = self.rows if tr["commit"] == "acknowledged" else 0
            tr["verdict"] = ("acknowledged and present on every server" if want and counts == {want}
                             else "refused by read_only, absent everywhere"
                             if tr["commit"] == "refused" and counts == {0}
                             else "absent everywhere" if counts == {0} else "INCONSISTENT")
            if tr["commit"] == "acknowledged" and counts != {want}:
                problems.append(f"LOST: the acknowledged {self.rows}-row transaction {tr['tag']} is not "
                                f"complete everywhere: {tr['present']}")
            elif tr["commit"] != "acknowledged" and counts - {0}:
                problems.append(f"the unacknowledged transaction {tr['tag']} ({tr['commit']}) is present: "
                                f"{tr['present']}")
            if not tr.get("in_flight"):
                problems.append(f"the {self.rows}-row transaction {tr['tag']} was not in flight when the "
                                f"pause started: {tr}")
        return problems


# ------------------------------------------------------------------ the sections
def write_rate_section(lab: Lab, run_dir: Path, args: Any, show: Any, phase: Phase,
                       common: dict[str, Any]) -> dict[str, Any]:
    """--rate-swaps swaps of ours at each of --rates writes/s, then the big-transaction swaps."""
    workers, threads = args.rate_workers, args.rate_threads
    app = start_wsgi(lab.config_path, run_dir, workers=workers, threads=threads)
    out: dict[str, Any] = {"app": f"gunicorn {workers} workers x {threads} threads (gthread)",
                           "client": "http.client (stdlib), keep-alive", "write_ratio": 1.0, "rates": []}
    try:
        for rate in args.rates:
            conc = args.rate_concurrency or min(256, max(16, math.ceil(rate / 25)))
            meter = CpuMeter(app, lab)
            print(f"write rate {rate:g}/s ({conc} connections, {workers}x{threads} app threads):", flush=True)

            def progress(kind: str, what: object, meter: CpuMeter = meter) -> None:
                meter.tick() if kind == "load" else show(kind, what)

            res = run_scenario(lab.config_path, app.url, swaps=args.rate_swaps, rate=rate, write_ratio=1.0,
                               concurrency=conc, progress=progress, client="stdlib", **common)
            p = phase(res, f"{rate:g} writes/s")
            cpu = meter.report()
            lat = [r.latency_ms for r in res.records]
            overall = res.load.writes_sent / res.load.seconds if res.load.seconds else 0.0
            achieved = steady_rate(res)
            p.update(asked_writes_per_s=rate, achieved_writes_per_s=round(achieved, 1),
                     overall_writes_per_s=round(overall, 1), concurrency=conc, cpu=cpu,
                     saturated=achieved < 0.95 * rate,
                     saturation=saturation(rate, achieved, cpu, conc, workers * threads,
                                           sum(lat) / len(lat) if lat else 0.0))
            print(f"  asked {rate:g}, reached {achieved:.0f} writes/s between swaps ({overall:.0f} overall): "
                  f"{p['saturation']}", flush=True)
            out["rates"].append(p)
        if args.big_trx_swaps > 0:
            big = BigTrxSwapper(lab.config_path, args.big_trx_rows)
            rate = args.rates[0]
            print(f"{args.big_trx_rows}-row transaction in flight at the pause ({args.big_trx_swaps} swaps, "
                  f"{rate:g} writes/s):", flush=True)
            res = run_scenario(lab.config_path, app.url, swaps=args.big_trx_swaps, rate=rate, write_ratio=1.0,
                               concurrency=16, progress=show, swapper=big, client="stdlib", **common)
            p = phase(res, "big transaction")
            p["problems"] += big.verify()
            p["trials"] = big.trials
            for tr in big.trials:
                print(f"  commit {AT_LABEL.get(tr['at'], tr['at'])}: {tr['commit']} "
                      f"{tr.get('commit_error', '')} -> {tr.get('verdict')}; in flight at the pause start: "
                      f"{tr.get('in_flight')}", flush=True)
            out["big_trx"] = p
    finally:
        app.stop()
    return out


def write_rate_table(sec: dict[str, Any]) -> str:
    lines = ["| writes/s asked | reached between swaps / overall | swaps ok | pause p50 / max "
             "| writes blocked p50 / max | failed | acked writes | lost | p99 latency "
             "| CPU app / MariaDB / generator (% of a core), host busy | saturated by |", "|" + "---|" * 11]
    for p in sec["rates"]:
        c = p["cpu"]
        lines.append(f"| {p['asked_writes_per_s']:g} | {p['achieved_writes_per_s']:g} / "
                     f"{p['overall_writes_per_s']:g} "
                     f"| {p['swaps_ok']}/{p['swaps']} "
                     f"| {f(p['pause_ms']['p50'])} / {f(p['pause_ms']['max'], ' ms')} "
                     f"| {f(p['write_block_ms']['p50'])} / {f(p['write_block_ms']['max'], ' ms')} "
                     f"| {p['failed']} | {p['acked_writes']} | {p['lost']} "
                     f"| {f(p['latency_ms']['p99'], ' ms')} "
                     f"| {c.get('app_pct')} / {c.get('mariadb_pct')} / {c.get('generator_pct')}, "
                     f"{c.get('host_busy_pct')}% | {p['saturation']} |")
    big = sec.get("big_trx")
    if big:
        rows_n = big["trials"][0]["rows"] if big["trials"] else "-"
        lines += ["", f"a {rows_n}-row transaction held open on the primary, committed by a direct client "
                  "(times from the pause start, ms):", "",
                  "| commit sent | outcome | rows per server after | in flight at the pause start "
                  "| rows inserted by | commit sent / returned | fence starts | pause window "
                  "| writes blocked |", "|" + "---|" * 9]
        for tr, sw in zip(big["trials"], big["per_swap"], strict=False):
            err = f" (MySQL error {tr['commit_error'].split(':')[0]})" if tr.get("commit_error") else ""
            rows = ", ".join(f"{k} {v}" for k, v in sorted(tr.get("present", {}).items()))
            lines.append(f"| {AT_LABEL.get(tr['at'], tr['at'])} | {tr.get('verdict')}{err} "
                         f"| {rows} | {'yes' if tr.get('in_flight') else 'NO'} "
                         f"| {f(tr.get('open_before_pause_ms'))} | {f(tr.get('commit_sent_ms'))} / "
                         f"{f(tr.get('commit_returned_ms'))} | {f(tr.get('fence_start_ms'))} "
                         f"| {f(sw['pause_ms'])} | {f(sw['write_block_ms'])} |")
    return "\n".join(lines)


