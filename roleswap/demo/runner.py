"""Start and stop the demo app servers (gunicorn / uvicorn) on free 127.0.0.1 ports.

Each server runs in its own session; it is stopped by its PID (SIGTERM, then SIGKILL of
its process group, whose id is that same PID).  ``start_*`` returns only when
``/health`` answers and every worker has registered with intermission, so a pause
started right after is acknowledged by all of them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from intermission.controller import Controller
from roleswap.config import load_config
from roleswap.lab.procs import free_port


class AppServerError(RuntimeError):
    pass


@dataclass
class AppServer:
    kind: str  # "wsgi" | "asgi"
    proc: subprocess.Popen[bytes]
    port: int
    workers: int
    log_path: Path
    redis_url: str
    scope: str
    worker_pids: set[int] = field(default_factory=set)
    # `intermission host-agent` the workers are attached to (None: each has its own agent)
    host_agent: subprocess.Popen[bytes] | None = None
    host_agent_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server; SIGKILL its process group if it has not exited in time;
        then wait until its workers' intermission heartbeats are gone."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # workers the master did not reap (e.g. it was SIGKILLed): they share its group
        for pid in self.worker_pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._stop_host_agent(timeout)
        self._wait_deregistered(timeout=5.0)

    def _stop_host_agent(self, timeout: float) -> None:
        agent = self.host_agent
        if agent is not None:
            self.worker_pids.add(agent.pid)  # its heartbeat goes too (it deregisters on SIGTERM)
            if agent.poll() is None:
                agent.terminate()  # our own child, by PID
                try:
                    agent.wait(timeout)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait(5)
        if self.host_agent_dir is not None:
            shutil.rmtree(self.host_agent_dir, ignore_errors=True)

    def _wait_deregistered(self, timeout: float) -> None:
        """A dead worker's heartbeat would make the next pause wait for its ack."""
        if not self.worker_pids:
            return
        ctrl = Controller(self.redis_url, self.scope)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if not {p.pid for p in ctrl.status().processes} & self.worker_pids:
                    return
            time.sleep(0.05)


def _wait_page(agent: subprocess.Popen[bytes], directory: Path, scope: str, timeout: float) -> None:
    """Until the host agent beats in its page (its workers then attach to it)."""
    from intermission import hostshm

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise AppServerError(f"intermission host-agent exited (code {agent.returncode})")
        try:
            page = hostshm.Page.attach(directory, scope)
        except hostshm.HostModeUnavailable:
            time.sleep(0.02)
            continue
        try:
            if page.agent_age() < 1.0:
                return
        finally:
            page.close()
        time.sleep(0.02)
    agent.kill()
    raise AppServerError(f"intermission host-agent did not start within {timeout:g}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc/PID/task/*/children)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for k in kids:
                if int(k) not in out:
                    out.add(int(k))
                    todo.append(int(k))
    return out


def _env(config_path: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["ROLESWAP_CONFIG"] = str(config_path)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def _spawn(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def start_wsgi(config_path: Path | str, run_dir: Path | str, *, workers: int = 4, threads: int = 8,
               env: dict[str, str] | None = None, ready_timeout: float = 30.0,
               host_agent: bool = False) -> AppServer:
    """gunicorn (gthread) serving :mod:`roleswap.demo.app_wsgi` on a free loopback port
    (``host_agent``: its workers attached to an ``intermission host-agent`` of their own)."""
    port = free_port()
    log_path = Path(run_dir) / f"gunicorn-{port}.log"
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:roleswap.demo.gunicorn_conf",
            "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", "gthread", "--threads", str(threads),
            "roleswap.demo.app_wsgi:app"]
    return _start("wsgi", argv, port, workers, log_path, Path(config_path), env, ready_timeout,
                  host_agent)


def start_asgi(config_path: Path | str, run_dir: Path | str, *, workers: int = 1,
               env: dict[str, str] | None = None, ready_timeout: float = 30.0) -> AppServer:
    """uvicorn serving :mod:`roleswap.demo.app_asgi` on a free loopback port."""
    port = free_port()
    log_path = Path(run_dir) / f"uvicorn-{port}.log"
    argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    argv.append("roleswap.demo.app_asgi:app")
    return _start("asgi", argv, port, workers, log_path, Path(config_path), env, ready_timeout)


def _start(kind: str, argv: list[str], port: int, workers: int, log_path: Path, config_path: Path,
           env: dict[str, str] | None, ready_timeout: float, host_agent: bool = False) -> AppServer:
    cfg = load_config(config_path)
    if cfg.redis_url is None:
        raise AppServerError(f"{config_path} has no [redis] url")
    agent = agent_dir = None
    if host_agent:  # a short directory: the agent's sockets live in it (108-byte limit)
        agent_dir = Path(tempfile.mkdtemp(prefix="rs-ha-"))
        # the URL (it may hold a password) goes by environment, not on a command line
        agent = _spawn([str(Path(sys.executable).parent / "intermission"), "host-agent",
                        "--scope", cfg.scope, "--dir", str(agent_dir)],
                       log_path.with_suffix(".agent.log"),
                       {**os.environ, "INTERMISSION_REDIS_URL": cfg.redis_url.reveal()})
        env = {**(env or {}), "INTERMISSION_HOST_AGENT": str(agent_dir)}
        try:
            _wait_page(agent, agent_dir, cfg.scope, ready_timeout)
        except BaseException:
            shutil.rmtree(agent_dir, ignore_errors=True)
            raise
    proc = _spawn(argv, log_path, _env(config_path, env))
    server = AppServer(kind, proc, port, workers, log_path, cfg.redis_url.reveal(), cfg.scope,
                       host_agent=agent, host_agent_dir=agent_dir)
    try:
        wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: AppServer, timeout: float) -> None:
    """/health answers and ``workers`` processes of this server registered with intermission."""
    deadline = time.monotonic() + timeout
    ctrl = Controller(server.redis_url, server.scope)
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            if not server.alive():
                raise AppServerError(f"{server.kind} server exited (code {server.proc.returncode}); "
                                     f"log {server.log_path}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise AppServerError(f"{server.kind} server not ready after {timeout:g}s; "
                                     f"log {server.log_path}:\n{server.log_tail()}")
            try:
                healthy = client.get(f"{server.url}/health").status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy:
                kids = descendants(server.pid) | {server.pid}
                procs = ctrl.status().processes
                registered = {p.pid for p in procs} & kids
                # workers attached to the server's host agent are counted by it
                attached = sum(int(p.metrics.get("processes", 0)) for p in procs
                               if server.host_agent is not None and p.pid == server.host_agent.pid)
                if len(registered) + attached >= server.workers:
                    server.worker_pids = registered
                    return
            time.sleep(0.1)
