"""Harness for the intermission integration tests: real app servers (gunicorn, uvicorn)
started as subprocesses on free loopback ports, stopped by PID (process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from intermission import Controller
from roleswap.lab.procs import free_port

ROOT = Path(__file__).resolve().parents[3]
APPS = Path(__file__).resolve().parent / "apps"


def new_scope() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@dataclass
class AppServer:
    proc: subprocess.Popen[bytes]
    port: int
    scope: str
    log: Path
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 15.0) -> httpx.Response:
        return httpx.get(self.base + path, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
                try:
                    os.killpg(self.proc.pid, sig)  # our own child's process group
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # workers left behind by a killed master (same process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_server(
    tmp: Path,
    kind: str,
    redis_url: str,
    *,
    scope: str | None = None,
    workers: int = 1,
    worker_class: str = "gthread",
    threads: int = 16,
    env: dict[str, str] | None = None,
    preload: bool = False,
    timeout: float = 20.0,
    app: str | None = None,
) -> AppServer:
    """Start gunicorn (kind="wsgi") or uvicorn (kind="asgi") and wait for /health."""
    port = free_port()
    scope = scope or new_scope()
    log = tmp / f"{kind}-{port}.log"
    if kind == "wsgi":
        argv = [sys.executable, "-m", "gunicorn", "--chdir", str(APPS), "-c", "gunicorn_conf.py",
                "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", worker_class,
                "--threads", str(threads), "--graceful-timeout", "1", "--timeout", "30",
                *(["--preload"] if preload else []), app or "wsgi_app:app"]
    else:
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(APPS), "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--workers", str(workers),
                app or "asgi_app:app"]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "IM_REDIS_URL": redis_url,
                "IM_SCOPE": scope, **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=APPS, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = AppServer(proc, port, scope, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(server.base + "/health", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{kind} server did not start:\n{server.log_text()[-3000:]}")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    """Factory: start servers for this test; all are stopped at teardown."""
    started: list[AppServer] = []

    def make(kind: str, redis_url: str, **kw: Any) -> AppServer:
        s = start_server(tmp_path, kind, redis_url, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  kind: str, redis_url: str, **kw: Any) -> AppServer:
    s = start_server(tmp_path_factory.mktemp(kind), kind, redis_url, **kw)
    request.addfinalizer(s.stop)
    return s


class Client:
    """Fire requests from threads; keeps their send order."""

    def __init__(self, workers: int = 64) -> None:
        self.pool = ThreadPoolExecutor(workers)
        self.http = httpx.Client(timeout=20.0, limits=httpx.Limits(max_connections=workers))
        self._lock = threading.Lock()

    def fire(self, url: str) -> Future[tuple[httpx.Response, float]]:
        def run() -> tuple[httpx.Response, float]:
            resp = self.http.get(url)
            return resp, time.monotonic()

        return self.pool.submit(run)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()


@pytest.fixture
def client() -> Iterator[Client]:
    c = Client()
    yield c
    c.close()


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def held_total(ctl: Controller) -> int:
    return sum(p.held for p in ctl.status().processes)


def wait_processes(ctl: Controller, n: int, timeout: float = 10.0) -> bool:
    return wait_for(lambda: len(ctl.status().processes) >= n, timeout, 0.05)
