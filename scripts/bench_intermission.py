#!/usr/bin/env python3
"""Benchmark the intermission middleware on this machine, loopback only, in one run (<60 s).

Measures:
  1. hot-path cost when not paused: the WSGI/ASGI app called directly N times, bare vs
     wrapped (µs per request), and req/s over HTTP of a trivial app bare vs wrapped
     (uvicorn, and gunicorn gthread), alternating rounds, ratio = median of per-round ratios;
  2. resume -> first held request enters the app: p50/p99, in-process (WSGI thread and
     ASGI task) and across processes over HTTP (uvicorn worker; CLOCK_MONOTONIC is
     system-wide so the server's entry time is comparable);
  3. time to release 1,000 held ASGI requests (in-process, and over HTTP with 1,000
     connections to one uvicorn worker): resume call -> last request entered the app;
  4. hold-added latency vs pause length: 50 requests held for L ms over HTTP; added =
     response time - (resume - send).

Usage: scripts/bench_intermission.py [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intermission import Controller  # noqa: E402
from intermission.asgi import IntermissionMiddleware as ASGIMiddleware  # noqa: E402
from intermission.wsgi import IntermissionMiddleware as WSGIMiddleware  # noqa: E402
from roleswap.lab.procs import free_port  # noqa: E402
from roleswap.lab.redis_server import start_redis  # noqa: E402

APP_SOURCE = textwrap.dedent('''
    import os, time
    from intermission.asgi import IntermissionMiddleware as A
    from intermission.wsgi import IntermissionMiddleware as W

    MODE, URL, SCOPE = os.environ["B_MODE"], os.environ["B_URL"], os.environ["B_SCOPE"]
    entries = []

    def wsgi_bare(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    async def asgi_bare(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/entries":  # exempt: when did held requests enter the app
            body = repr(entries).encode()
            entries.clear()
        else:
            body = repr(time.monotonic()).encode()
            entries.append(time.monotonic())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    opts = dict(redis_url=URL, scope=SCOPE, max_hold=20.0, exempt_paths=("/entries",))
    wsgi = W(wsgi_bare, **opts) if MODE == "mw" else wsgi_bare
    asgi = A(asgi_bare, **opts) if MODE == "mw" else asgi_bare
''')


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# ----------------------------------------------------------------- servers + raw client

class Server:
    def __init__(self, kind: str, mode: str, workdir: Path, redis_url: str, scope: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": f"{workdir}:{ROOT}", "B_MODE": mode,
               "B_URL": redis_url, "B_SCOPE": scope}
        if kind == "asgi":
            argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(workdir), "--host",
                    "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                    "--lifespan", "off", "--backlog", "4096", "bench_app:asgi"]
        else:
            argv = [sys.executable, "-m", "gunicorn", "--chdir", str(workdir), "-b",
                    f"127.0.0.1:{self.port}", "-w", "1", "-k", "gthread", "--threads", "8",
                    "--keep-alive", "30", "--log-level", "warning", "bench_app:wsgi"]
        self.log = open(workdir / f"{kind}-{mode}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                asyncio.run(_get_once(self.port, "/"))
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{kind}/{mode} server did not start; see {workdir}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   path: str) -> tuple[int, bytes]:
    """One keep-alive HTTP/1.1 GET on an open connection: (status, body)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   path: str) -> bytes:
    status, body = await http_get(reader, writer, path)
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    return body


async def _get_once(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _request(reader, writer, path)
    finally:
        writer.close()


async def _throughput(port: int, seconds: float, conns: int = 16) -> float:
    count = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop_at:
                await _request(reader, writer, "/")
                count += 1
        finally:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return count / (time.monotonic() - t0)


# ----------------------------------------------------------------- 1. hot path

def inprocess_overhead(redis_url: str, n: int) -> dict[str, float]:
    def bare(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = WSGIMiddleware(bare, redis_url=redis_url, scope="bench-hot")
    wrapped.start()
    env: dict[str, Any] = {"PATH_INFO": "/", "REQUEST_METHOD": "GET"}

    def sr(status: str, headers: list[Any]) -> None:
        return None

    while not wrapped.gate.open:
        time.sleep(0.001)

    def run_wsgi(app: Callable[..., Any]) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                app(env, sr)
            best = min(best, (time.perf_counter() - t0) / n)
        return best * 1e6

    w_bare, w_mw = run_wsgi(bare), run_wsgi(wrapped)
    wrapped.stop()

    async def abare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def run_asgi() -> tuple[float, float]:
        amw = ASGIMiddleware(abare, redis_url=redis_url, scope="bench-hot")
        amw.start()
        while not amw.gate.open:
            await asyncio.sleep(0.001)
        scope = {"type": "http", "path": "/", "method": "GET"}

        async def send(msg: Any) -> None:
            return None

        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        results = []
        for app in (abare, amw):
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(n):
                    await app(scope, receive, send)
                best = min(best, (time.perf_counter() - t0) / n)
            results.append(best * 1e6)
        amw.stop()
        return results[0], results[1]

    a_bare, a_mw = asyncio.run(run_asgi())
    return {"wsgi_bare_us": w_bare, "wsgi_mw_us": w_mw, "wsgi_overhead_us": w_mw - w_bare,
            "asgi_bare_us": a_bare, "asgi_mw_us": a_mw, "asgi_overhead_us": a_mw - a_bare}


def group_cpu(pgid: int) -> float:
    """CPU seconds (user+system) used so far by every process of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after ")": state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _round(server: Server, seconds: float) -> tuple[float, float]:
    """(wall req/s, server CPU µs per request) for one round."""
    cpu0 = group_cpu(server.proc.pid)
    t0 = time.monotonic()
    rps = asyncio.run(_throughput(server.port, seconds))
    n = rps * (time.monotonic() - t0)
    return rps, (group_cpu(server.proc.pid) - cpu0) / n * 1e6


def http_ratio(kind: str, bare: Server, mw: Server, rounds: int, seconds: float) -> dict[str, Any]:
    """Alternating rounds.  Wall req/s is noisy on a small box (client and server share
    the CPUs), so the server's CPU time per request is measured too: a worker's req/s
    capacity is the inverse of it, and its ratio is the steadier figure."""
    _round(bare, 0.3)  # warm up both
    _round(mw, 0.3)
    rps_b, rps_m, cpu_b, cpu_m = [], [], [], []
    for _ in range(rounds):
        rb, cb = _round(bare, seconds)
        rm, cm = _round(mw, seconds)
        rps_b.append(rb)
        rps_m.append(rm)
        cpu_b.append(cb)
        cpu_m.append(cm)
    return {"kind": kind, "bare_rps": statistics.median(rps_b),
            "mw_rps": statistics.median(rps_m),
            "wall_ratio": statistics.median(rps_m) / statistics.median(rps_b),
            "bare_cpu_us": statistics.median(cpu_b), "mw_cpu_us": statistics.median(cpu_m),
            "cpu_ratio_median": statistics.median(cpu_b) / statistics.median(cpu_m),
            # best-of: interference from other work only ever adds time
            "best_bare_cpu_us": min(cpu_b), "best_mw_cpu_us": min(cpu_m),
            "cpu_ratio": min(cpu_b) / min(cpu_m),
            "rounds_rps": [rps_b, rps_m], "rounds_cpu_us": [cpu_b, cpu_m]}


# ----------------------------------------------------------------- 2. resume -> release

def release_latency_wsgi(redis_url: str, runs: int) -> list[float]:
    entered: list[float] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        entered.append(time.monotonic())
        return [b""]

    mw = WSGIMiddleware(app, redis_url=redis_url, scope="bench-rel-w")
    mw.start()
    ctl = Controller(redis_url, "bench-rel-w")
    out = []
    for _ in range(runs):
        h = ctl.pause("bench", ttl=10, auto_renew=False)
        h.wait_drained(2)
        t = threading.Thread(target=mw, args=({"PATH_INFO": "/"}, lambda *a: None))
        t.start()
        while mw.gate.held < 1:
            time.sleep(0.0002)
        entered.clear()
        t0 = time.monotonic()
        h.resume()
        t.join(5)
        out.append((entered[0] - t0) * 1000)
    mw.stop()
    return out


def release_latency_asgi(redis_url: str, runs: int) -> list[float]:
    ctl = Controller(redis_url, "bench-rel-a")

    async def main() -> list[float]:
        entered: list[float] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            entered.append(time.monotonic())

        mw = ASGIMiddleware(app, redis_url=redis_url, scope="bench-rel-a")
        mw.start()
        out = []
        loop = asyncio.get_running_loop()
        for _ in range(runs):
            h = await loop.run_in_executor(None, lambda: ctl.pause("b", ttl=10, auto_renew=False))
            await loop.run_in_executor(None, h.wait_drained, 2)
            task = asyncio.create_task(mw({"type": "http", "path": "/"}, _noop, _noop))
            while mw.gate.held < 1:
                await asyncio.sleep(0.0002)
            entered.clear()
            t0 = time.monotonic()
            await loop.run_in_executor(None, h.resume)
            await task
            out.append((entered[0] - t0) * 1000)
        mw.stop()
        return out

    return asyncio.run(main())


async def _noop(*args: Any) -> Any:
    return {"type": "http.request"}


def release_latency_http(server: Server, ctl: Controller, runs: int) -> list[float]:
    async def main() -> list[float]:
        out = []
        loop = asyncio.get_running_loop()
        for _ in range(runs):
            h = await loop.run_in_executor(None, lambda: ctl.pause("b", ttl=10, auto_renew=False))
            await loop.run_in_executor(None, h.wait_drained, 2)
            task = asyncio.create_task(_get_once(server.port, "/"))
            await asyncio.sleep(0.005)  # let it reach the gate
            t0 = time.monotonic()
            await loop.run_in_executor(None, h.resume)
            entered = float(await task)
            out.append((entered - t0) * 1000)
        return out

    return asyncio.run(main())


# ----------------------------------------------------------------- 3. release 1,000

def release_many_inprocess(redis_url: str, n: int) -> float:
    ctl = Controller(redis_url, "bench-many")

    async def main() -> float:
        last = [0.0]

        async def app(scope: Any, receive: Any, send: Any) -> None:
            last[0] = time.monotonic()

        mw = ASGIMiddleware(app, redis_url=redis_url, scope="bench-many", max_hold=20)
        mw.start()
        loop = asyncio.get_running_loop()
        h = await loop.run_in_executor(None, lambda: ctl.pause("b", ttl=20, auto_renew=False))
        await loop.run_in_executor(None, h.wait_drained, 2)
        tasks = [asyncio.create_task(mw({"type": "http", "path": "/"}, _noop, _noop))
                 for _ in range(n)]
        while mw.gate.held < n:
            await asyncio.sleep(0.001)
        t0 = time.monotonic()
        await loop.run_in_executor(None, h.resume)
        await asyncio.gather(*tasks)
        mw.stop()
        return (last[0] - t0) * 1000

    return asyncio.run(main())


def release_many_http(server: Server, ctl: Controller, n: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        h = await loop.run_in_executor(None, lambda: ctl.pause("b", ttl=30, auto_renew=False))
        await loop.run_in_executor(None, h.wait_drained, 2)
        conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", server.port)
                                       for _ in range(n)))
        await _get_once(server.port, "/entries")  # reset
        tasks = [asyncio.create_task(_request(r, w, "/")) for r, w in conns]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            held = sum(p.held for p in await loop.run_in_executor(None, ctl.processes_now))
            if held >= n:
                break
        t0 = time.monotonic()
        await loop.run_in_executor(None, h.resume)
        await asyncio.gather(*tasks)
        client_done = time.monotonic()
        entries = ast.literal_eval((await _get_once(server.port, "/entries")).decode())
        for _r, w in conns:
            w.close()
        return {"server_last_entry_ms": (max(entries) - t0) * 1000,
                "client_all_responses_ms": (client_done - t0) * 1000, "released": len(entries)}

    return asyncio.run(main())


# ----------------------------------------------------------------- 4. added latency

def added_latency(server: Server, ctl: Controller, pause_ms: float, n: int) -> list[float]:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        h = await loop.run_in_executor(None, lambda: ctl.pause("b", ttl=30, auto_renew=False))
        await loop.run_in_executor(None, h.wait_drained, 2)
        conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", server.port)
                                       for _ in range(n)))
        sent: list[float] = []
        done: list[float] = []

        async def one(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            sent.append(time.monotonic())
            await _request(r, w, "/")
            done.append(time.monotonic())

        tasks = [asyncio.create_task(one(r, w)) for r, w in conns]
        await asyncio.sleep(pause_ms / 1000)
        t_resume = time.monotonic()
        await loop.run_in_executor(None, h.resume)
        await asyncio.gather(*tasks)
        for _r, w in conns:
            w.close()
        # time beyond the pause itself: response - resume call start
        return [(d - t_resume) * 1000 for d in done]

    return asyncio.run(main())


# ----------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    ap.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    q = args.quick
    started = time.monotonic()
    results: dict[str, Any] = {"machine": {
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "platform": platform.platform(), "loadavg_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory(prefix="bench-intermission-") as tmp:
        work = Path(tmp)
        (work / "bench_app.py").write_text(APP_SOURCE)
        redis = start_redis(work / "redis")
        servers: list[Server] = []
        try:
            url = redis.url
            results["hot_path"] = inprocess_overhead(url, 20_000 if q else 100_000)
            scope = "bench-http"
            ctl = Controller(url, scope)
            ctl.processes_now = ctl.store.processes  # type: ignore[attr-defined]
            a_bare = Server("asgi", "bare", work, url, scope)
            servers.append(a_bare)
            a_mw = Server("asgi", "mw", work, url, scope)
            servers.append(a_mw)
            w_bare = Server("wsgi", "bare", work, url, scope)
            servers.append(w_bare)
            w_mw = Server("wsgi", "mw", work, url, scope)
            servers.append(w_mw)
            rounds, secs = (2, 0.5) if q else (6, 1.0)
            results["http"] = [http_ratio("uvicorn (ASGI)", a_bare, a_mw, rounds, secs),
                               http_ratio("gunicorn gthread (WSGI)", w_bare, w_mw, rounds, secs)]
            for h in results["http"]:
                over = results["hot_path"]["asgi_overhead_us" if "ASGI" in h["kind"]
                                           else "wsgi_overhead_us"]
                h["implied_ratio"] = h["best_bare_cpu_us"] / (h["best_bare_cpu_us"] + over)
            w_mw.stop()  # only the ASGI server takes part from here on
            runs = 50 if q else 200
            rel = {"wsgi_inprocess": release_latency_wsgi(url, runs),
                   "asgi_inprocess": release_latency_asgi(url, runs),
                   "http_uvicorn": release_latency_http(a_mw, ctl, runs // 2)}
            results["resume_to_first_release_ms"] = {
                k: {"p50": pct(v, 50), "p99": pct(v, 99), "max": max(v), "n": len(v)}
                for k, v in rel.items()}
            many_in = [release_many_inprocess(url, 1000) for _ in range(3)]
            many_http = [release_many_http(a_mw, ctl, 1000) for _ in range(1 if q else 2)]
            results["release_1000_asgi_ms"] = {
                "inprocess": {"median": statistics.median(many_in), "max": max(many_in)},
                "http_uvicorn": many_http}
            curve = {}
            for pause_ms in (10, 50, 100, 250, 500, 1000):
                added = added_latency(a_mw, ctl, pause_ms, 50)
                curve[str(pause_ms)] = {"p50": pct(added, 50), "max": max(added)}
            results["added_latency_ms_by_pause_ms"] = curve
        finally:
            for s in servers:
                s.stop()
            redis.stop()
    results["total_seconds"] = time.monotonic() - started
    results["machine"]["loadavg_end"] = os.getloadavg()[0]
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nJSON written to {args.json}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"intermission benchmark  (Python {m['python']}, {m['cpus']} CPUs, loopback, "
          f"1-min load {m['loadavg_start']:.2f} at start, {m['loadavg_end']:.2f} at end)")
    hp = r["hot_path"]
    print("\n1. not paused: cost per request, app called directly (best of 5)")
    print(f"   WSGI  bare {hp['wsgi_bare_us']:.3f} us  with middleware {hp['wsgi_mw_us']:.3f} us"
          f"  -> +{hp['wsgi_overhead_us']:.3f} us   (target <= 2 us)")
    print(f"   ASGI  bare {hp['asgi_bare_us']:.3f} us  with middleware {hp['asgi_mw_us']:.3f} us"
          f"  -> +{hp['asgi_overhead_us']:.3f} us   (target <= 2 us)")
    print("   over HTTP, trivial app, 1 worker, medians of alternating rounds (goal ratio >= 0.98):")
    print(f"   {'server':<24} {'bare req/s':>10} {'with':>8} {'wall ratio':>10}"
          f" {'best CPU/req bare':>18} {'with':>9} {'capacity ratio':>15}")
    for h in r["http"]:
        print(f"   {h['kind']:<24} {h['bare_rps']:>10.0f} {h['mw_rps']:>8.0f}"
              f" {h['wall_ratio']:>10.3f} {h['best_bare_cpu_us']:>15.1f} us"
              f" {h['best_mw_cpu_us']:>6.1f} us {h['cpu_ratio']:>15.3f}")
    for h in r["http"]:
        over = hp["asgi_overhead_us"] if "ASGI" in h["kind"] else hp["wsgi_overhead_us"]
        print(f"   {h['kind']:<24} implied by the in-process overhead: "
              f"{h['best_bare_cpu_us']:.1f} / ({h['best_bare_cpu_us']:.1f} + {over:.2f}) = "
              f"{h['implied_ratio']:.4f}")
    print("\n2. resume -> first held request enters the app (ms)   goal: p99 <= 5 ms")
    for k, v in r["resume_to_first_release_ms"].items():
        print(f"   {k:<16} p50 {v['p50']:6.2f}  p99 {v['p99']:6.2f}  max {v['max']:6.2f}  (n={v['n']})")
    many = r["release_1000_asgi_ms"]
    print("\n3. release 1,000 held ASGI requests: resume call -> last one enters the app"
          "   goal <= 100 ms")
    print(f"   in-process           median {many['inprocess']['median']:6.1f} ms"
          f"  max {many['inprocess']['max']:6.1f} ms")
    for h in many["http_uvicorn"]:
        print(f"   uvicorn, 1000 conns  last entry {h['server_last_entry_ms']:6.1f} ms"
              f"  (all 1000 responses at the client {h['client_all_responses_ms']:6.1f} ms)")
    print("\n4. latency added by holding, beyond the pause itself (50 held requests, HTTP)")
    print("   pause      p50 added   max added")
    for k, v in r["added_latency_ms_by_pause_ms"].items():
        print(f"   {k:>5} ms   {v['p50']:7.2f} ms  {v['max']:7.2f} ms")
    print(f"\ntotal {r['total_seconds']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
