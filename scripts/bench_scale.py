#!/usr/bin/env python3
"""Benchmark intermission at scale, loopback only, against a redis-server of its own.

Measures:
  a. processes: N = 1, 10, 100, 300 app processes (forked from this one, which has
     imported intermission already, so memory is shared copy-on-write).  Each runs the
     real ASGI middleware (its Agent and Gate) on an event loop, driven in-process.  Per
     round: ``Controller.pause()`` -> ``wait_drained()`` reports drained ("pause ->
     drained"); each process then holds one request; ``resume()`` -> every process has
     released it ("resume -> all released": the latest app-entry time any process
     reports; CLOCK_MONOTONIC is one clock for every process on Linux).
  b. held requests: 10,000 held ASGI requests in one process (memory per held request
     by tracemalloc and RSS, resume -> last released, all 200), and 1,000 requests
     through gunicorn gthread with 50 threads (50 held in threads, the rest queued in
     gunicorn; worker RSS, resume -> last released, all 200).

Exit status 1 if any request was lost or a pause never drained (a process never
acknowledged).  Usage: scripts/bench_scale.py [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncio  # noqa: E402

from intermission import Controller  # noqa: E402
from intermission import hostshm as hs  # noqa: E402
from intermission.asgi import IntermissionMiddleware as ASGIMiddleware  # noqa: E402
from roleswap.lab.redis_server import start_redis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale_held import held_asgi, held_wsgi  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
HTTP_SCOPE = {"type": "http", "path": "/", "method": "GET", "headers": []}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (as scripts/bench_intermission.py)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "max": max(values),
            "min": min(values), "n": len(values)}


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` used so far."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (after "state ppid ...")
    return ticks / TICK


# --split-cpus: the app processes (and their host agent) on one CPU set, the controller
# (this process) and Redis on another, as when roleswap and Redis run on other hosts
APP_CPUS: set[int] | None = None


def to_app_cpus() -> None:
    if APP_CPUS:
        os.sched_setaffinity(0, APP_CPUS)


def child_setup() -> None:
    die_with_parent()
    to_app_cpus()


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child if the bench process dies (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------- a. one app process

def child_main(idx: int, url: str, scope: str, cmd_fd: int, rep_fd: int,
               host_dir: str | None = None) -> None:
    """An app process: the real ASGI middleware on an event loop.  Commands on ``cmd_fd``:
    ``h`` send one request (it is held: we only send while paused), ``q`` quit.  Reports
    on ``rep_fd`` (one line per os.write, atomic below PIPE_BUF): ``ready``, ``held``,
    ``rel <monotonic>`` (the request entered the app), ``done <status>``."""

    def say(text: str) -> None:
        os.write(rep_fd, f"{text} {idx}\n".encode())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan
        say(f"rel {time.monotonic()!r}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        mw = ASGIMiddleware(app, redis_url=url, scope=scope, max_hold=60.0,
                            startup_wait=10.0,  # 300 processes start at once
                            host_agent=host_dir)
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            status: list[int] = []

            async def send(msg: dict[str, Any]) -> None:
                if msg["type"] == "http.response.start":
                    status.append(int(msg["status"]))

            task = asyncio.ensure_future(mw(dict(HTTP_SCOPE), receive, send))
            while not task.done() and mw.gate.held < 1:
                await asyncio.sleep(0)
            say("held" if not task.done() else "passed")
            await task
            say(f"done {status[0] if status else 0}")

        def on_cmd() -> None:
            data = os.read(cmd_fd, 64)
            if not data:
                stop.set()
            for c in data:
                if c == ord("h"):
                    t = loop.create_task(one())
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                elif c == ord("q"):
                    stop.set()

        await mw(
            {"type": "lifespan"}, _lifespan_receive(), _ignore)  # starts the agent, as uvicorn
        while not mw.gate.open:
            await asyncio.sleep(0.002)
        loop.add_reader(cmd_fd, on_cmd)
        say("ready")
        await stop.wait()
        mw.stop()

    asyncio.run(main())


def _lifespan_receive() -> Any:
    sent = [False]

    async def receive() -> dict[str, Any]:
        if not sent[0]:
            sent[0] = True
            return {"type": "lifespan.startup"}
        return {"type": "lifespan.shutdown"}

    return receive


async def _ignore(msg: Any) -> None:
    return None


class Fleet:
    """N forked app processes, one command pipe each, one shared report pipe."""

    def __init__(self, n: int, url: str, scope: str, host_dir: str | None = None) -> None:
        self.pids: list[int] = []
        self.cmd: list[int] = []
        self.rep_r, rep_w = os.pipe()
        self._buf = b""
        gc.collect()
        gc.freeze()  # children do not copy the parent's objects when the GC walks them
        for idx in range(n):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: keep only its own command end and the report end
                code = 0
                try:
                    child_setup()
                    for fd in (*self.cmd, self.rep_r, w):
                        os.close(fd)
                    child_main(idx, url, scope, r, rep_w, host_dir)
                except BaseException:  # a child must never return into the bench
                    code = 1
                finally:
                    os._exit(code)
            os.close(r)
            self.pids.append(pid)
            self.cmd.append(w)
        os.close(rep_w)
        gc.unfreeze()

    def send(self, cmd: bytes) -> None:
        for fd in self.cmd:
            os.write(fd, cmd)

    def collect(self, kinds: dict[str, int], timeout: float) -> dict[str, list[str]]:
        """Read report lines until ``kinds[k]`` lines of each kind ``k`` arrived."""
        got: dict[str, list[str]] = {k: [] for k in kinds}
        deadline = time.monotonic() + timeout
        while any(len(got[k]) < n for k, n in kinds.items()):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rep_r], [], [], left)[0]:
                break
            chunk = os.read(self.rep_r, 65536)
            if not chunk:
                break
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for line in lines:
                kind, _, rest = line.decode().partition(" ")
                got.setdefault(kind, []).append(rest)
        return got

    def stop(self) -> None:
        for fd in self.cmd:
            try:
                os.write(fd, b"q")
                os.close(fd)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for pid in self.pids:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)  # our own child, by PID
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
        os.close(self.rep_r)


def registered(ctl: Controller) -> int:
    """App processes Redis knows of: their own heartbeats, or the host agents' counts."""
    return sum(int(p.metrics.get("processes", 0)) if p.kind == "host" else 1
               for p in ctl.status().processes)


def start_host_agent(url: str, scope: str, directory: str) -> subprocess.Popen[bytes]:
    """`intermission host-agent` for ``scope`` (a child of ours, stopped by PID)."""
    proc = subprocess.Popen([str(Path(sys.executable).parent / "intermission"),
                             "host-agent", "--scope", scope, "--dir", directory],
                            env={**os.environ, "INTERMISSION_REDIS_URL": url},  # not in argv
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, preexec_fn=child_setup)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            page = hs.Page.attach(directory, scope)
        except hs.HostModeUnavailable:
            page = None
        if page is not None:
            age = page.agent_age()
            page.close()
            if age < 1.0:
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"the host agent did not start: {proc.communicate()[1].decode()[-2000:]}")


def measure_processes(url: str, n: int, rounds: int,
                      host_dir: str | None = None) -> dict[str, Any]:
    """``rounds`` pause/drain/hold/resume cycles with ``n`` app processes (each with its own
    Redis agent; or, with ``host_dir``, all attached to one host agent)."""
    scope = f"scale-{n}-{'host' if host_dir else 'own'}-{os.getpid()}"
    ctl = Controller(url, scope)
    t0 = time.monotonic()
    agent = start_host_agent(url, scope, host_dir) if host_dir else None
    failures: list[str] = []
    out: dict[str, Any] = {"n": n, "mode": "host" if host_dir else "own", "rounds": []}
    fleet = Fleet(n, url, scope, host_dir)
    try:
        ready = fleet.collect({"ready": n}, 60 + n / 5)["ready"]
        deadline = time.monotonic() + 30
        while registered(ctl) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        out["registered"] = registered(ctl)
        out["startup_s"] = time.monotonic() - t0
        if len(ready) < n or out["registered"] < n:
            failures.append(f"N={n}: {len(ready)} ready, {out['registered']} registered")
            return {**out, "failures": failures}
        time.sleep(1.0)  # let the startup burst of heartbeats settle
        for _ in range(rounds):
            r, fail = _round(ctl, fleet, n)
            out["rounds"].append(r)
            failures += fail
            time.sleep(0.3)
    finally:
        fleet.stop()
        if agent is not None:
            agent.terminate()  # our own child, by PID
            agent.wait(10)
    rs = out["rounds"]
    if rs:
        out["pause_to_drained_ms"] = summary([r["pause_to_drained_ms"] for r in rs])
        out["wait_drained_elapsed_ms"] = summary([r["wait_drained_elapsed_ms"] for r in rs])
        out["pause_call_ms"] = summary([r["pause_call_ms"] for r in rs])
        out["resume_to_all_released_ms"] = summary([r["resume_to_all_released_ms"] for r in rs])
        out["resume_to_first_released_ms"] = summary(
            [r["resume_to_first_released_ms"] for r in rs])
        out["window_ms"] = summary([r["window_ms"] for r in rs])
        out["pause_window_ms"] = summary([r["pause_window_ms"] for r in rs])
        for k in ("cpu_ms_per_process_pause", "cpu_ms_per_process_resume"):
            out[k] = statistics.mean(r[k] for r in rs)
    out["lost"] = sum(r["lost"] for r in rs)
    out["failures"] = failures
    return out


def _round(ctl: Controller, fleet: Fleet, n: int) -> tuple[dict[str, Any], list[str]]:
    fail: list[str] = []
    cpu0 = cpu_seconds(fleet.pids)
    t0 = time.monotonic()
    h = ctl.pause("bench_scale", ttl=60)
    t1 = time.monotonic()
    rep = h.wait_drained(30)
    t2 = time.monotonic()
    if not rep.drained:
        fail.append(f"N={n}: not drained: {rep}")
    cpu1 = cpu_seconds(fleet.pids)
    fleet.send(b"h")
    held = fleet.collect({"held": n}, 30)
    if len(held["held"]) < n or held.get("passed"):
        fail.append(f"N={n}: {len(held['held'])} held, {len(held.get('passed', []))} passed")
    time.sleep(0.05)  # the held-count heartbeats are written (batched) before the resume
    cpu2 = cpu_seconds(fleet.pids)
    t3 = time.monotonic()
    outcome = h.resume()
    t4 = time.monotonic()
    got = fleet.collect({"rel": n, "done": n}, 30)
    rel = [float(x.split()[0]) for x in got["rel"]]
    ok = sum(1 for x in got["done"] if x.split()[0] == "200")
    time.sleep(0.05)  # and the heartbeats after the resume
    cpu3 = cpu_seconds(fleet.pids)
    if outcome.value != "resumed":
        fail.append(f"N={n}: resume said {outcome.value}")
    if ok < n:
        fail.append(f"N={n}: {n - ok} request(s) lost")
    return {
        "pause_call_ms": (t1 - t0) * 1000,
        "pause_to_drained_ms": (t2 - t0) * 1000,
        "wait_drained_elapsed_ms": rep.elapsed * 1000,
        "drained": rep.drained,
        "resume_call_ms": (t4 - t3) * 1000,
        "resume_to_all_released_ms": (max(rel) - t3) * 1000 if rel else float("nan"),
        "resume_to_first_released_ms": (min(rel) - t3) * 1000 if rel else float("nan"),
        # the part intermission adds to a pause window (the bench's own step of sending
        # one request to every process while paused is left out)
        "window_ms": (t2 - t0 + (max(rel) if rel else t4) - t3) * 1000,
        # the window as roleswap measures its pause: pause -> drained, then resume sent ->
        # acknowledged by Redis (traffic may flow again; held requests start running then)
        "pause_window_ms": (t2 - t0 + t4 - t3) * 1000,
        "released": len(rel), "ok": ok, "lost": n - ok,
        # CPU (user+system) all app processes used per process, in ms: steadier than
        # wall times on a shared machine; at N processes on 2 CPUs the wall time is
        # bounded below by N * this / 2
        "cpu_ms_per_process_pause": (cpu1 - cpu0) * 1000 / n,
        "cpu_ms_per_process_resume": (cpu3 - cpu2) * 1000 / n,
    }, fail


# ----------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write every figure as JSON to this file")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run, < 60 s)")
    ap.add_argument("--procs", help="comma-separated process counts (default 1,10,100,300)")
    ap.add_argument("--rounds", type=int, help="pause rounds per process count")
    ap.add_argument("--only", choices=("processes", "held"), help="run one section only")
    ap.add_argument("--split-cpus", action="store_true",
                    help="pin the app processes (and the host agent) to the second half of the CPUs, "
                         "this controller and Redis to the first half (roleswap and Redis on other "
                         "hosts, as in production); needs >= 2 CPUs")
    ap.add_argument("--modes", default="own,host",
                    help="processes section: 'own' (each process its own Redis agent), 'host' "
                         "(one intermission host-agent for all of them); default both")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    q = args.quick
    global APP_CPUS
    cpus = sorted(os.sched_getaffinity(0))
    if args.split_cpus:
        if len(cpus) < 2:
            ap.error("--split-cpus needs at least 2 CPUs")
        half = len(cpus) // 2
        APP_CPUS = set(cpus[half:])
        os.sched_setaffinity(0, set(cpus[:half]))
    counts = [int(x) for x in args.procs.split(",")] if args.procs else (
        [1, 10, 30] if q else [1, 10, 100, 300])
    rounds = args.rounds or (3 if q else 10)
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(), "loadavg_start": os.getloadavg()[0]},
        "params": {"quick": q, "process_counts": counts, "rounds": rounds,
                   "split_cpus": bool(args.split_cpus),
                   "app_cpus": sorted(APP_CPUS) if APP_CPUS else None},
    }
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        redis = start_redis(Path(tmp) / "redis")
        try:
            modes = [m.strip() for m in args.modes.split(",") if m.strip()]
            if set(modes) - {"own", "host"}:
                ap.error(f"--modes: use own and/or host; got {args.modes!r}")
            if args.only != "held" and "own" in modes:
                procs = [measure_processes(redis.url, n, rounds) for n in counts]
                results["processes"] = procs
                failures += [f for p in procs for f in p["failures"]]
                results["processes_ratio"] = ratios(procs)
            if args.only != "held" and "host" in modes:
                hdir = str(Path(tmp) / "ha")
                procs = [measure_processes(redis.url, n, rounds, hdir) for n in counts]
                results["processes_host"] = procs
                failures += [f for p in procs for f in p["failures"]]
                results["processes_host_ratio"] = ratios(procs)
            if args.only != "processes":
                results["held_asgi"] = held_asgi(redis.url, 2_000 if q else 10_000)
                results["held_wsgi"] = held_wsgi(redis.url, Path(tmp), 200 if q else 1_000,
                                                 20 if q else 50)
                for k in ("held_asgi", "held_wsgi"):
                    if results[k]["lost"]:
                        failures.append(f"{k}: {results[k]['lost']} request(s) lost")
        finally:
            redis.stop()
    results["failures"] = failures
    results["lost"] = sum(p["lost"] for k in ("processes", "processes_host")
                          for p in results.get(k, [])) + sum(
        results[k]["lost"] for k in ("held_asgi", "held_wsgi") if k in results)
    results["total_seconds"] = time.monotonic() - started
    results["machine"]["loadavg_end"] = os.getloadavg()[0]
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nJSON written to {args.json}")
    return 1 if failures else 0


def ratios(procs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures at the largest N over those at N=1 (the issue's goal: window <= 1.5x)."""
    by_n = {p["n"]: p for p in procs if "pause_to_drained_ms" in p}
    if 1 not in by_n or len(by_n) < 2:
        return {}
    top = max(by_n)
    out: dict[str, Any] = {"n_high": top, "n_low": 1}
    for key in ("pause_to_drained_ms", "resume_to_all_released_ms", "window_ms",
                "pause_window_ms"):
        for q in ("p50", "p95"):
            out[f"{key}_{q}"] = by_n[top][key][q] / by_n[1][key][q]
    out["goal_window_p50_within_1_5x"] = out["window_ms_p50"] <= 1.5
    out["goal_pause_window_p50_within_1_5x"] = out["pause_window_ms_p50"] <= 1.5
    return out


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"intermission at scale  (Python {m['python']}, {m['cpus']} CPUs, loopback, "
          f"1-min load {m['loadavg_start']:.2f} at start, {m['loadavg_end']:.2f} at end)")
    if r["params"].get("split_cpus"):
        print(f"split CPUs: app processes and host agent on CPU(s) {r['params']['app_cpus']}, "
              "the controller and Redis on the others")
    for key, ratio_key, how in (
            ("processes", "processes_ratio", "each with its own Redis agent"),
            ("processes_host", "processes_host_ratio", "all attached to one host agent")):
        if key in r:
            _print_processes(r[key], r.get(ratio_key) or {}, how)
    _print_held(r)


def _print_processes(procs: list[dict[str, Any]], ra: dict[str, Any], how: str) -> None:
    print(f"\na. N app processes (real ASGI middleware each, {how}), rounds of pause -> "
          "drained, one held request each, resume -> all released   (ms: p50 / p95 / max)")
    print(f"   {'N':>4} {'rounds':>6} {'pause -> drained':>24} {'resume -> all released':>24}"
          f" {'pause->drained + resume->released':>32} {'lost':>5} {'CPU ms/proc pause, resume':>26}")
    for p in procs:
        if "pause_to_drained_ms" not in p:
            print(f"   {p['n']:>4} failed: {'; '.join(p['failures'])}")
            continue
        cells = [_pmx(p[k]) for k in
                 ("pause_to_drained_ms", "resume_to_all_released_ms", "window_ms")]
        print(f"   {p['n']:>4} {len(p['rounds']):>6} {cells[0]:>24} {cells[1]:>24}"
              f" {cells[2]:>32} {p['lost']:>5} {p['cpu_ms_per_process_pause']:>12.2f},"
              f" {p['cpu_ms_per_process_resume']:>5.2f}")
    if ra:
        print(f"   N={ra['n_high']} vs N=1 (p50): pause -> drained "
              f"{ra['pause_to_drained_ms_p50']:.2f}x, resume -> released "
              f"{ra['resume_to_all_released_ms_p50']:.2f}x, window {ra['window_ms_p50']:.2f}x"
              f"  (goal <= 1.5x: {'met' if ra['goal_window_p50_within_1_5x'] else 'NOT met'})")
        print(f"   the pause window as roleswap measures it (pause -> drained, resume sent -> "
              f"acknowledged): N=1 {_p50(procs, 1)}, N={ra['n_high']} "
              f"{_p50(procs, ra['n_high'])} ms, {ra['pause_window_ms_p50']:.2f}x  (goal <= 1.5x: "
              f"{'met' if ra['goal_pause_window_p50_within_1_5x'] else 'NOT met'})")


def _print_held(r: dict[str, Any]) -> None:
    for key, title in (("held_asgi", "b1. held ASGI requests, one process, in-process"),
                       ("held_wsgi", "b2. requests through gunicorn gthread")):
        if key not in r:
            continue
        h = r[key]
        print(f"\n{title}: {h['requests']} requests" + (
            f", {h['threads']} threads ({h['held_in_gate']} held in the gate, the rest queued "
            "in gunicorn)" if key == "held_wsgi" else ""))
        if "tracemalloc_bytes_per_held" in h:
            print(f"   memory per held request: {h['tracemalloc_bytes_per_held']:.0f} B traced "
                  f"({h['baseline_bytes_per_task']:.0f} B of it is the asyncio task of a bare "
                  f"app awaiting an event, so +{h['middleware_bytes_per_held']:.0f} B for the "
                  f"hold), RSS +{h['rss_bytes_per_held']:.0f} B")
        else:
            print(f"   worker RSS +{h['rss_delta_bytes'] / 1e6:.2f} MB while held and queued = "
                  f"{h['rss_bytes_per_request']:.0f} B per request (incl. gunicorn's own state); "
                  f"+{h['rss_delta_from_fresh_bytes'] / 1e6:.2f} MB over a worker that never "
                  f"served (its {h['threads']} threads included)")
        if "unpaused_all_responses_ms" in h:
            print(f"   reference: the same {h['requests']} requests, not paused, answered in "
                  f"{h['unpaused_all_responses_ms']:.1f} ms")
        print(f"   resume -> first released {h['resume_to_first_released_ms']:.1f} ms, "
              f"-> last released {h['resume_to_last_released_ms']:.1f} ms, all responses "
              f"{h['resume_to_all_responses_ms']:.1f} ms; 200s {h['ok']}/{h['requests']}, "
              f"lost {h['lost']}")
    print(f"\nlost requests: {r['lost']}   failures: {len(r['failures'])}")
    for f in r["failures"]:
        print(f"   {f}")
    print(f"total {r['total_seconds']:.1f} s")


def _p50(procs: list[dict[str, Any]], n: int) -> str:
    return next(f"{p['pause_window_ms']['p50']:.1f}" for p in procs if p["n"] == n)


def _pmx(s: dict[str, float]) -> str:
    return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['max']:.1f}"


if __name__ == "__main__":
    sys.exit(main())
