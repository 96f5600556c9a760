"""Redis Sentinel on loopback: a primary, a replica and three sentinels (lab, tests).

:func:`start_sentinel_group` returns once every sentinel monitors the master, knows the
replica and the two other sentinels (so a failover can be agreed on: quorum 2), or it
stops everything it started and raises :class:`LabError`.  Every process is a
:class:`RedisServer` (stopped by PID after checking its command line names its own
``host:port``); ``on_spawn`` receives each one as soon as it exists, so a caller can
record it for teardown even if start-up fails later.

Passwords (``password`` for the Redis servers, ``sentinel_password`` for the sentinels)
are written only into files of mode 0600 and never into messages.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from roleswap.errors import LabError
from roleswap.lab import procs
from roleswap.lab.redis_server import RedisServer, start_redis
from roleswap.lab.state import Lab, LabNode

__all__ = ["MASTER", "SentinelGroup", "lab_sentinel_group", "start_lab_sentinel",
           "start_sentinel_group", "start_sentinels"]

MASTER = "mymaster"
QUORUM = 2


@dataclass
class SentinelGroup:
    """Our primary + replica + sentinels.  ``servers`` are the Redis data servers."""

    dir: Path
    master_name: str
    servers: list[RedisServer]
    sentinels: list[RedisServer]
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    failover_timeout_ms: int = 10000

    @property
    def sentinel_addresses(self) -> list[str]:
        return [s.marker for s in self.sentinels]

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL intermission takes (with the passwords)."""
        auth = f":{self.password}@" if self.password else ""
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return (f"redis+sentinel://{auth}{','.join(self.sentinel_addresses)}/"
                f"{self.master_name}/0{query}")

    def sentinel_client(self, i: int = 0) -> redis.Redis:
        s = self.sentinels[i]
        return redis.Redis(host=s.host, port=s.port, password=self.sentinel_password,
                           socket_timeout=2, socket_connect_timeout=2)

    def server_client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(host=server.host, port=server.port, password=self.password,
                           socket_timeout=2, socket_connect_timeout=2)

    def master_address(self, i: int = 0) -> tuple[str, int] | None:
        """The master as sentinel ``i`` reports it (None if it cannot say)."""
        try:
            addr = self.sentinel_client(i).sentinel_get_master_addr_by_name(self.master_name)
        except redis.RedisError:
            return None
        if not isinstance(addr, tuple | list) or len(addr) != 2:
            return None
        host = addr[0].decode() if isinstance(addr[0], bytes) else str(addr[0])
        return host, int(addr[1])

    def master(self) -> RedisServer:
        """The data server sentinel 0 reports as the master."""
        addr = self.master_address()
        for s in self.servers:
            if addr == (s.host, s.port):
                return s
        raise LabError(f"the sentinels report master {addr}, none of ours",
                       remedy=f"see the logs under {self.dir}")

    def wait_master(self, other_than: tuple[str, int] | None, timeout: float = 30.0) -> RedisServer:
        """Wait until EVERY sentinel reports one master (not ``other_than``) and that
        server says ``role:master``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            addrs = {self.master_address(i) for i in range(len(self.sentinels))}
            if len(addrs) == 1:
                addr = addrs.pop()
                if addr is not None and addr != other_than:
                    for s in self.servers:
                        if (s.host, s.port) == addr and _role(self, s) == "master":
                            return s
            if time.monotonic() > deadline:
                raise LabError(f"no failover within {timeout:g}s (sentinels report {addrs})",
                               remedy=f"see the sentinel logs under {self.dir}")
            time.sleep(0.02)

    def failover(self, timeout: float = 30.0, *, until: str = "sentinels",
                 hurry: bool = False) -> RedisServer:
        """``SENTINEL FAILOVER`` (no agreement needed); return the new master once the
        sentinels agree on it and the old master is settled as :meth:`settle` ``until``
        says.  Until the sentinels turn the old master into a replica (about 8 s after
        the promotion here), clients that are still connected to it keep using it: what
        they write there is lost when it resyncs.  ``hurry``: see :meth:`settle`."""
        old, new = self.promote(timeout)
        self.settle(old, timeout, until=until, hurry=hurry)
        return new

    def promote(self, timeout: float = 30.0) -> tuple[tuple[str, int] | None, RedisServer]:
        """``SENTINEL FAILOVER`` and wait only until every sentinel names the new master:
        the old one still takes writes (see :meth:`failover`).  Returns (old, new)."""
        old = self.master_address()
        self.sentinel_client().sentinel_failover(self.master_name)
        return old, self.wait_master(old, timeout)

    def settle(self, old: tuple[str, int] | None, timeout: float = 30.0, *,
               hurry: bool = False, until: str = "sentinels") -> None:
        """Wait until the old master ``old`` is a replica again (``until="role"``, ~10 s
        after the promotion here), also synced (``"synced"``), and also known as a healthy
        replica by every sentinel (``"sentinels"``, up to 10 s more: needed before the next
        failover can promote it).  Then the failover-timeout is back to normal (see
        :meth:`detach_replica`).  ``hurry``: tell it to replicate from the new master now
        (what the sentinels do about 8 s later)."""
        if until not in ("role", "synced", "sentinels"):
            raise ValueError(f"until must be role, synced or sentinels; got {until!r}")
        new = self.master()
        deadline = time.monotonic() + timeout
        for s in self.servers:
            if (s.host, s.port) == old and procs.alive(s.pid, s.marker):
                if hurry and _role(self, s) == "master":
                    self.server_client(s).replicaof(new.host, new.port)
                while _role(self, s) != "slave":
                    if time.monotonic() > deadline:
                        raise LabError(f"the old master {s.marker} was not made a replica "
                                       f"within {timeout:g}s",
                                       remedy=f"see the sentinel logs under {self.dir}")
                    time.sleep(0.05)
                if until == "role":
                    continue
                self.wait_replica_synced(s, max(1.0, deadline - time.monotonic()))
                # and every sentinel knows it as a healthy replica of the new master (its
                # INFO refresh: up to 10 s), or the next failover finds no replica to promote
                while until == "sentinels" and not all(
                        self._sees_replica(i, s, new) for i in range(len(self.sentinels))):
                    if time.monotonic() > deadline:
                        raise LabError(f"the sentinels do not list {s.marker} as a replica of "
                                       f"{new.marker} within {timeout:g}s",
                                       remedy=f"see the sentinel logs under {self.dir}")
                    time.sleep(0.05)
        self._set_failover_timeout(self.failover_timeout_ms)

    def _sees_replica(self, i: int, replica: RedisServer, master: RedisServer) -> bool:
        try:
            rows = self.sentinel_client(i).sentinel_slaves(self.master_name)
        except redis.RedisError:
            return False
        return any(f"{r.get('ip')}:{r.get('port')}" == replica.marker and r.get("flags") == "slave"
                   and r.get("master-link-status") == "ok" and int(r.get("master-port") or 0)
                   == master.port for r in rows)

    def _set_failover_timeout(self, ms: int) -> None:
        for i in range(len(self.sentinels)):
            self.sentinel_client(i).sentinel_set(self.master_name, "failover-timeout", ms)

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (the sentinels then fail over on their own)."""
        m = self.master()
        if procs.alive(m.pid, m.marker):
            os.kill(m.pid, signal.SIGKILL)
            for _ in range(200):
                if not procs.alive(m.pid):
                    break
                time.sleep(0.01)
        return m

    def wait_replica_synced(self, server: RedisServer, timeout: float = 30.0) -> None:
        """Wait until ``server`` is a replica with its link to the master up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = self.server_client(server).info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") == "up":
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise LabError(f"{server.marker} did not become a synced replica within {timeout:g}s",
                       remedy=f"see {server.dir / 'redis.log'}")

    def detach_replica(self) -> RedisServer:
        """Make the replica stop receiving the master's writes (``REPLICAOF`` a closed
        port), as a replica that lags behind would: a failover soon after promotes a
        server that lacks every write made from now on -- what asynchronous replication
        can lose.  The sentinels would point it back at the master after their
        failover-timeout, so that is raised to 10 minutes until the next :meth:`failover`."""
        master = self.master()
        replica = next(s for s in self.servers if s != master)
        self._set_failover_timeout(600_000)
        self.server_client(replica).replicaof(replica.host, procs.free_port(replica.host))
        return replica

    def reattach_replica(self, replica: RedisServer, timeout: float = 30.0) -> None:
        """Undo :meth:`detach_replica`: replicate from the master again, synced."""
        master = self.master()
        self.server_client(replica).replicaof(master.host, master.port)
        self.wait_replica_synced(replica, timeout)
        self._set_failover_timeout(self.failover_timeout_ms)

    def processes(self) -> list[RedisServer]:
        return [*self.sentinels, *self.servers]

    def stop(self) -> None:
        for p in self.processes():
            p.stop(5.0)


def _role(group: SentinelGroup, server: RedisServer) -> str | None:
    try:
        return str(group.server_client(server).info("replication").get("role"))
    except redis.RedisError:
        return None


def _auth_args(password: str | None) -> tuple[str, ...]:
    return ("--requirepass", password, "--masterauth", password) if password else ()


def start_sentinel_group(
    workdir: Path, *, password: str | None = None, sentinel_password: str | None = None,
    down_after_ms: int = 1000, failover_timeout_ms: int = 10000,
    on_spawn: Callable[[str, RedisServer], None] = lambda _name, _server: None,
    timeout: float = 30.0,
) -> SentinelGroup:
    """A new primary + replica + three sentinels under ``workdir``."""
    procs.require("redis-server", "redis-sentinel")
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[RedisServer] = []

    def spawned(name: str) -> Callable[[RedisServer], None]:
        def record(server: RedisServer) -> None:
            started.append(server)
            on_spawn(name, server)
        return record

    try:
        primary = start_redis(workdir / "redis1", on_spawn=spawned("redis1"),
                              extra=_auth_args(password))
        group = start_sentinels(workdir, primary, password=password,
                                sentinel_password=sentinel_password, down_after_ms=down_after_ms,
                                failover_timeout_ms=failover_timeout_ms, on_spawn=on_spawn,
                                started=started, timeout=timeout)
    except BaseException:
        for s in started:
            s.stop(2.0)
        raise
    return group


def start_sentinels(
    workdir: Path, primary: RedisServer, *, password: str | None = None,
    sentinel_password: str | None = None, down_after_ms: int = 1000,
    failover_timeout_ms: int = 10000,
    on_spawn: Callable[[str, RedisServer], None] = lambda _name, _server: None,
    started: list[RedisServer] | None = None, timeout: float = 30.0,
) -> SentinelGroup:
    """A replica of ``primary`` plus three sentinels monitoring it (the lab's own Redis
    becomes a Sentinel-managed master this way).  Stops what it started if it fails."""
    mine: list[RedisServer] = []
    spawned_list = started if started is not None else mine
    sentinel_bin = procs.require("redis-sentinel")["redis-sentinel"]

    def record(name: str, server: RedisServer) -> None:
        spawned_list.append(server)
        on_spawn(name, server)

    try:
        replica = start_redis(
            workdir / "redis2", on_spawn=lambda s: record("redis2", s),
            extra=("--replicaof", primary.host, str(primary.port), *_auth_args(password)))
        group = SentinelGroup(workdir, MASTER, [primary, replica], [], password,
                              sentinel_password, failover_timeout_ms)
        group.wait_replica_synced(replica, timeout)
        for i in range(3):
            name = f"sentinel{i + 1}"

            def on_sentinel(s: RedisServer, name: str = name) -> None:
                record(name, s)

            group.sentinels.append(_start_one_sentinel(
                sentinel_bin, workdir / name, primary, password, sentinel_password,
                down_after_ms, failover_timeout_ms, on_sentinel, timeout))
        _wait_ready(group, timeout)
    except BaseException:
        if started is None:
            for s in mine:
                s.stop(2.0)
        raise
    return group


def _start_one_sentinel(
    binary: str, d: Path, primary: RedisServer, password: str | None,
    sentinel_password: str | None, down_after_ms: int, failover_timeout_ms: int,
    on_spawn: Callable[[RedisServer], None], timeout: float,
) -> RedisServer:
    d.mkdir(parents=True, exist_ok=True)
    last = ""
    for _attempt in range(3):
        port = procs.free_port(primary.host)
        lines = [
            f"port {port}", f"bind {primary.host}", "daemonize no", "protected-mode no",
            f"dir {d}", f"logfile {d / 'sentinel.log'}",
            f"sentinel monitor {MASTER} {primary.host} {primary.port} {QUORUM}",
            f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
            f"sentinel failover-timeout {MASTER} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        if password:
            lines.append(f"sentinel auth-pass {MASTER} {password}")
        if sentinel_password:
            lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
        conf = d / "sentinel.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        proc = procs.spawn([binary, str(conf)], d / "sentinel.out")
        server = RedisServer(primary.host, port, proc.pid, d)
        on_spawn(server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if procs.port_open(primary.host, port):
                return server
            time.sleep(0.01)
        server.stop(1.0)
        last = procs.tail_log(d / "sentinel.log")
    raise LabError(f"redis-sentinel did not start: {last}", remedy=f"see {d / 'sentinel.log'}")


def _wait_ready(group: SentinelGroup, timeout: float) -> None:
    """Every sentinel knows the replica and the other sentinels (hello messages every 2 s)."""
    deadline = time.monotonic() + timeout
    others = len(group.sentinels) - 1
    while True:
        ready = 0
        for i in range(len(group.sentinels)):
            try:
                m = group.sentinel_client(i).sentinel_master(group.master_name)
            except redis.RedisError:
                continue
            if not isinstance(m, dict):
                continue
            if int(m.get("num-slaves", 0)) >= 1 and int(m.get("num-other-sentinels", 0)) >= others:
                ready += 1
        if ready == len(group.sentinels):
            return
        if time.monotonic() > deadline:
            raise LabError(f"the sentinels did not discover each other within {timeout:g}s "
                           f"({ready}/{len(group.sentinels)} ready)",
                           remedy=f"see the sentinel logs under {group.dir}")
        time.sleep(0.05)


def start_lab_sentinel(lab: Lab, record: Callable[[LabNode], None]) -> SentinelGroup:
    """``lab up --sentinel``: the lab's Redis becomes a Sentinel-managed master with a
    replica and three sentinels (recorded in lab.json for ``lab down``), and the lab's
    config gets the Sentinel form of ``[redis]`` instead of its url."""
    node = lab.node("redis")
    primary = RedisServer(node.host, node.port, node.pid, Path(node.dir))

    def on_spawn(name: str, s: RedisServer) -> None:
        record(LabNode("redis-replica" if name == "redis2" else name, "redis",
                       s.pid, s.host, s.port, str(s.dir), s.marker))

    group = start_sentinels(lab.dir / "sentinel", primary, on_spawn=on_spawn)
    path = lab.config_path
    text = path.read_text()
    url_line = next(line for line in text.splitlines() if line.startswith("url = \"redis://"))
    sentinels = ", ".join(f'"{a}"' for a in group.sentinel_addresses)
    text = text.replace(url_line, "# Redis Sentinel (`lab up --sentinel`): the master as the "
                        f"sentinels report it\nsentinels = [{sentinels}]\nmaster = \"{MASTER}\"")
    path.write_text(text)
    return group


def lab_sentinel_group(lab: Lab) -> SentinelGroup:
    """The :class:`SentinelGroup` of a lab started with ``--sentinel`` (from lab.json)."""
    def server(name: str) -> RedisServer:
        n = lab.node(name)
        return RedisServer(n.host, n.port, n.pid, Path(n.dir))

    return SentinelGroup(lab.dir / "sentinel", MASTER, [server("redis"), server("redis-replica")],
                         [server(f"sentinel{i}") for i in (1, 2, 3)])
