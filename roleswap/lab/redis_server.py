"""A throw-away redis-server on a free loopback port (lab, tests, demo)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from roleswap.errors import LabError
from roleswap.lab import procs


@dataclass(frozen=True)
class RedisServer:
    """A running redis-server we started; stop it with :meth:`stop`."""

    host: str
    port: int
    pid: int
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def marker(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return procs.alive(self.pid, self.marker)

    def stop(self, timeout: float = 5.0) -> bool:
        return procs.stop(self.pid, self.marker, timeout)


def start_redis(
    workdir: Path, host: str = "127.0.0.1", port: int | None = None, timeout: float = 10.0,
    on_spawn: Callable[[RedisServer], None] = lambda _server: None,
    extra: tuple[str, ...] = (),
) -> RedisServer:
    """Start redis-server in ``workdir`` (created) and return once it answers PING.

    ``on_spawn`` receives the server as soon as its process exists (to record its PID).
    ``extra``: more redis-server options (e.g. ``--replicaof``, ``--requirepass``).
    """
    binary = procs.require("redis-server")["redis-server"]
    workdir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(3):
        p = port or procs.free_port(host)
        argv = [
            binary, "--port", str(p), "--bind", host, "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "no",
            "--logfile", str(workdir / "redis.log"),
            # A replica's full sync starts at once: Redis 7 waits 5 s by default for more
            # replicas to share a diskless transfer -- 5 s per Sentinel group started and
            # per failed-over master re-attached, in a lab that never has another replica.
            "--repl-diskless-sync-delay", "0", *extra,
        ]
        proc = procs.spawn(argv, workdir / "redis.out")
        server = RedisServer(host, p, proc.pid, workdir)
        on_spawn(server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _ping(host, p):
                return server
            time.sleep(0.01)
        server.stop(1.0)
        last_error = procs.tail_log(workdir / "redis.log")
        if port is not None:
            break
    raise LabError(
        f"redis-server did not start on {host}: {last_error}",
        remedy=f"see {workdir / 'redis.log'}",
    )


def _ping(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            answer = s.recv(64)
            # +PONG, or -NOAUTH from a server that requires a password: it is up either way
            return answer.startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


