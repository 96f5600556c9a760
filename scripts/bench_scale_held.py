"""Section b of scripts/bench_scale.py: many held requests in one process.

* :func:`held_asgi`: N held requests through the real ASGI middleware in one process,
  driven in-process.  Each figure comes from a fresh forked process (a clean RSS): the
  release run (resume -> last request entered the app, every response 200, RSS delta),
  and a tracemalloc run that also measures a bare app whose tasks await an event, so
  the hold's own share per request can be told from the asyncio task's.
* :func:`held_wsgi`: N requests over HTTP through gunicorn gthread, 1 worker, T threads
  (T held in the gate, the rest queued in gunicorn): the worker's RSS delta, resume ->
  last request entered the app, every response 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_intermission import http_get

from intermission import Controller
from intermission.asgi import IntermissionMiddleware as ASGIMiddleware
from roleswap.lab.procs import free_port

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int | str = "self") -> int:
    """Resident set size in bytes."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def in_child(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` in a forked child (clean memory figures) and return its result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            data = json.dumps(fn()).encode()
            with os.fdopen(w, "wb") as out:
                out.write(data)
        except BaseException as exc:  # report it; never return into the bench
            code = 1
            sys.stderr.write(f"bench child failed: {exc!r}\n")
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        raw = f.read()
    os.waitpid(pid, 0)
    if not raw:
        raise RuntimeError("a bench child failed (see stderr)")
    result: dict[str, Any] = json.loads(raw)
    return result


# ----------------------------------------------------------------- ASGI, in-process

async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _request(app: Any, statuses: list[int]) -> Any:
    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            statuses.append(int(msg["status"]))

    return app({"type": "http", "path": "/", "method": "GET", "headers": []}, _receive, send)


def _asgi_run(url: str, n: int, traced: bool) -> dict[str, Any]:
    scope = f"held-asgi-{os.getpid()}"
    entries: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entries.append(time.monotonic())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        mw = ASGIMiddleware(app, redis_url=url, scope=scope, max_hold=120.0)
        statuses: list[int] = []
        await _request(mw, statuses)  # starts the agent; warms every code path up
        while not mw.gate.open:
            await asyncio.sleep(0.002)
        ctl = Controller(url, scope)
        h = await loop.run_in_executor(None, lambda: ctl.pause("bench_scale", ttl=120))
        await loop.run_in_executor(None, h.wait_drained, 10)
        statuses.clear()
        entries.clear()
        out: dict[str, Any] = {"requests": n}
        if traced:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
        rss0 = rss()
        tasks = [asyncio.ensure_future(_request(mw, statuses)) for _ in range(n)]
        while mw.gate.held < n:
            await asyncio.sleep(0.005)
        out["held_in_gate"] = mw.gate.held
        if traced:
            out["tracemalloc_bytes_per_held"] = (tracemalloc.get_traced_memory()[0] - base) / n
            tracemalloc.stop()
        out["rss_bytes_per_held"] = (rss() - rss0) / n
        t0 = time.monotonic()
        await loop.run_in_executor(None, h.resume)
        await asyncio.gather(*tasks)
        done = time.monotonic()
        mw.stop()
        ok = statuses.count(200)
        out.update({
            "resume_to_first_released_ms": (min(entries) - t0) * 1000,
            "resume_to_last_released_ms": (max(entries) - t0) * 1000,
            "resume_to_all_responses_ms": (done - t0) * 1000,
            "ok": ok, "lost": n - ok,
        })
        return out

    return asyncio.run(main())


def _bare_task_bytes(n: int) -> float:
    """Traced bytes per task of a bare ASGI app whose requests await one event: what a
    waiting request costs without any middleware."""

    async def main() -> float:
        ev = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await ev.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})

        statuses: list[int] = []
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.ensure_future(_request(app, statuses)) for _ in range(n)]
        await asyncio.sleep(0.05)
        per = (tracemalloc.get_traced_memory()[0] - base) / n
        tracemalloc.stop()
        ev.set()
        await asyncio.gather(*tasks)
        return per

    return asyncio.run(main())


def held_asgi(url: str, n: int) -> dict[str, Any]:
    """Hold ``n`` ASGI requests in one process; memory per held request, release time."""
    out = in_child(lambda: _asgi_run(url, n, traced=False))
    traced = in_child(lambda: {**_asgi_run(url, n, traced=True),
                               "baseline": _bare_task_bytes(n)})
    out["tracemalloc_bytes_per_held"] = traced["tracemalloc_bytes_per_held"]
    out["baseline_bytes_per_task"] = traced["baseline"]
    out["middleware_bytes_per_held"] = traced["tracemalloc_bytes_per_held"] - traced["baseline"]
    out["lost"] += traced["lost"]
    out["traced_run"] = {k: v for k, v in traced.items() if k.startswith(("resume", "ok"))}
    return out


# ----------------------------------------------------------------- WSGI, gunicorn gthread

WSGI_APP = textwrap.dedent('''
    import json, os, time
    from intermission.wsgi import IntermissionMiddleware

    entries = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/entries":  # exempt: when held requests entered the app
            body = json.dumps(entries).encode()
            entries.clear()
        else:
            entries.append(time.monotonic())
            body = b"ok"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    application = IntermissionMiddleware(
        app, redis_url=os.environ["B_URL"], scope=os.environ["B_SCOPE"], max_hold=120.0,
        exempt_paths=("/entries",))

    def post_worker_init(worker):
        import intermission
        intermission.start_all()
''')


_http = http_get  # one HTTP/1.1 GET on an open connection: (status, body)


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _http(reader, writer, path)
    finally:
        writer.close()


def held_wsgi(url: str, tmp: Path, n: int, threads: int) -> dict[str, Any]:
    """``n`` requests through gunicorn gthread (1 worker, ``threads`` threads) while
    paused: ``threads`` held in the gate, the rest queued; then resume."""
    work = tmp / "wsgi"
    work.mkdir()
    (work / "scale_app.py").write_text(WSGI_APP)
    scope = f"held-wsgi-{os.getpid()}"
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--chdir", str(work), "-c", "scale_app.py",
            "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread", "--threads", str(threads),
            "--worker-connections", str(n + 100), "--backlog", str(max(2048, n * 2)),
            "--keep-alive", "60", "--timeout", "120", "--graceful-timeout", "1",
            "--log-level", "warning", "scale_app:application"]
    env = {**os.environ, "PYTHONPATH": f"{work}:{Path(__file__).resolve().parents[1]}",
           "B_URL": url, "B_SCOPE": scope}
    with open(work / "gunicorn.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        return asyncio.run(_wsgi_main(url, scope, port, n, threads))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # our own child's process group
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


async def _wsgi_main(url: str, scope: str, port: int, n: int, threads: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ctl = Controller(url, scope)

    def call(fn: Callable[[], Any]) -> Any:
        return loop.run_in_executor(None, fn)

    deadline = time.monotonic() + 30
    while True:  # up, registered and synced (a request passes)
        try:
            if (await _get(port, "/"))[0] == 200 and (await call(ctl.status)).processes:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("gunicorn did not start (see its log in the temp dir)")
        await asyncio.sleep(0.05)
    worker = (await call(ctl.status)).processes[0].pid
    rss_fresh = rss(worker)
    ref = await _serve_all(port, n)  # the same n requests, not paused: what serving costs
    await _get(port, "/entries")
    rss0 = rss(worker)  # warmed up: gunicorn's threads exist already
    h = await call(lambda: ctl.pause("bench_scale", ttl=120))
    await call(lambda: h.wait_drained(10))
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                   for _ in range(n)))
    tasks = [asyncio.ensure_future(_http(r, w, "/")) for r, w in conns]
    held = 0
    while time.monotonic() < deadline + 60:
        await asyncio.sleep(0.05)
        held = sum(p.held for p in (await call(ctl.status)).processes)
        if held >= threads:
            break
    await asyncio.sleep(0.5)  # let gunicorn accept and queue the rest
    rss1 = rss(worker)
    t0 = time.monotonic()
    await call(h.resume)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    done = time.monotonic()
    entries = json.loads((await _get(port, "/entries"))[1])
    for _r, w in conns:
        w.close()
    ok = sum(1 for x in results if isinstance(x, tuple) and x[0] == 200)
    return {
        "requests": n, "threads": threads, "held_in_gate": held, "worker_pid": worker,
        "rss_fresh_bytes": rss_fresh, "rss_before_bytes": rss0, "rss_held_bytes": rss1,
        "rss_delta_bytes": rss1 - rss0, "rss_bytes_per_request": (rss1 - rss0) / n,
        "rss_delta_from_fresh_bytes": rss1 - rss_fresh,
        "resume_to_first_released_ms": (min(entries) - t0) * 1000 if entries else None,
        "resume_to_last_released_ms": (max(entries) - t0) * 1000 if entries else None,
        "resume_to_all_responses_ms": (done - t0) * 1000,
        "released": len(entries), "ok": ok, "lost": n - ok,
        "unpaused_all_responses_ms": ref,
    }


async def _serve_all(port: int, n: int) -> float:
    """ms to answer ``n`` concurrent requests when not paused (a reference for the
    release time: the server's own speed)."""
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                   for _ in range(n)))
    t0 = time.monotonic()
    await asyncio.gather(*(_http(r, w, "/") for r, w in conns))
    elapsed = (time.monotonic() - t0) * 1000
    for _r, w in conns:
        w.close()
    return elapsed
