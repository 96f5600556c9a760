"""`roleswap lab up | down | status`: a local topology of real servers.

State lives in ``DIR/lab.json`` (written after *each* process starts, so a
crash half-way still leaves enough for ``lab down`` to stop everything by PID).
``DIR/roleswap.toml`` is a complete roleswap config for the lab.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymysql

from roleswap.errors import LabError
from roleswap.lab import procs
from roleswap.lab.engines import engine_for
from roleswap.lab.flavors import DEFAULT_SERVER, Server, flavor, get_server
from roleswap.lab.node import Engine, NodeSpec, root_connect_socket, start_node
from roleswap.lab.provision import ensure_template, new_accounts, write_config
from roleswap.lab.redis_server import start_redis
from roleswap.lab.replication import make_writable, prove_replication, start_replication
from roleswap.lab.state import CONFIG_FILE, DEFAULT_DIR, STATE_FILE, Lab, LabNode

# Re-exported: callers (the plugin, tests) import these from roleswap.lab.lab.
__all__ = ["CONFIG_FILE", "DEFAULT_DIR", "STATE_FILE", "Lab", "LabNode", "ensure_template",
           "lab_down", "lab_status", "lab_up", "new_accounts", "write_config"]

def lab_up(
    directory: Path | str = DEFAULT_DIR,
    replicas: int = 2,
    gtid: bool = True,
    cluster: str = "lab",
    log: Any = None,
    hosts: bool = False,
    subnet: str | None = None,
    server: str = DEFAULT_SERVER,
    haproxy: bool = False,
    sentinel: bool = False,
) -> Lab:
    """Start db1 (primary) + ``replicas`` replicas + redis; return when replication is proven.

    ``server`` is a flavor of :mod:`roleswap.lab.flavors` (``mariadb-10.11``, the host's
    package; ``mariadb-11.8``; ``mysql-9.7``); a flavor that is not the host's own is
    fetched into the per-user cache first (once; progress goes to ``log``).
    ``haproxy``: also start a HAProxy in front of every node and write a config with
    ``switch.method = "haproxy"`` (see :mod:`roleswap.lab.haproxy_server`).
    ``sentinel``: Redis as a primary + replica with three sentinels, and the Sentinel form
    of ``[redis]`` in the config (see :mod:`roleswap.lab.redis_sentinel`).
    Never half-starts: on any failure everything started so far is stopped and
    the directory removed, then the error is raised.
    """
    say = log or (lambda _msg: None)
    if replicas < 1 or replicas > 8:
        raise LabError(f"--replicas {replicas} is out of range", remedy="use 1 to 8")
    directory = Path(directory).absolute()
    fl = flavor(server)  # refuse an unknown name before touching anything
    if hosts:
        from roleswap.lab.hosts import require_root

        require_root()  # refuse before touching anything
    elif subnet is not None:
        raise LabError("--subnet only makes sense with --hosts", remedy="add --hosts")
    if haproxy and hosts:
        raise LabError("--haproxy runs on the loopback lab only", remedy="drop --hosts or --haproxy")
    if sentinel and hosts:
        raise LabError("--sentinel runs on the loopback lab only", remedy="drop --hosts or --sentinel")
    procs.require(*fl.host_programs, "redis-server", *(["haproxy"] if haproxy else []),
                  *(["redis-sentinel"] if sentinel else []))
    if (directory / STATE_FILE).exists():
        existing = Lab.load(directory)
        if any(n.alive() for n in existing.nodes):
            raise LabError(
                f"a lab is already running in {directory}",
                remedy=f"stop it with `roleswap lab down --dir {directory}` or use another --dir",
            )
        lab_down(directory)
    srv = get_server(server, say)  # may fetch (minutes at worst): before any lab exists
    engine = engine_for(fl.engine)
    if hosts:
        from roleswap.lab.hosts_up import lab_up_hosts

        lab_h: Lab = lab_up_hosts(directory, replicas, gtid, cluster, subnet, say, lab_down, srv)
        return lab_h
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # the config inside holds passwords
    lab = Lab(directory, cluster=cluster, gtid=gtid, server=fl.name)
    lab.save()
    t0 = time.monotonic()
    try:
        template = ensure_template(engine, srv, say)
        acc = new_accounts()
        used: set[int] = set()
        specs = []
        for i in range(replicas + 1):
            port = procs.free_port(avoid=used)
            used.add(port)
            specs.append(NodeSpec(
                name=f"db{i + 1}", server_id=i + 1, port=port, dir=directory / f"db{i + 1}",
                replica=i > 0, gtid=gtid,
            ))
        lock = threading.Lock()  # the ports picked so far (a retry picks another)
        record = lab.recorder()
        start_redis(directory / "redis", on_spawn=lambda r: record(
            LabNode("redis", "redis", r.pid, r.host, r.port, str(r.dir), r.marker)))
        # Nodes start in parallel: server start-up is mostly waiting on fsync and init.
        def start(i: int) -> None:
            specs[i] = _start_with_retry(specs[i], engine, srv, template, used, lock, record)
            engine.bootstrap(specs[i], acc)
            if not specs[i].replica:
                make_writable(specs[i])  # its my.cnf says read_only=1, like every node's

        with ThreadPoolExecutor(len(specs)) as pool:
            for fut in [pool.submit(start, i) for i in range(len(specs))]:
                fut.result()
        lab.nodes.sort(key=lambda n: (n.kind != "redis", n.name))
        lab.save()
        for spec in specs[1:]:
            start_replication(spec, "127.0.0.1", specs[0].port, acc)
        prove_replication(specs, gtid)
        write_config(lab, acc)
        if haproxy:
            from roleswap.lab.haproxy_server import start_lab_haproxy

            start_lab_haproxy(lab, record)
        if sentinel:
            from roleswap.lab.redis_sentinel import start_lab_sentinel

            start_lab_sentinel(lab, record)
    except BaseException:
        lab_down(directory)
        raise
    say(f"lab up ({fl.name}, {srv.version}) in {time.monotonic() - t0:.1f}s: {directory}")
    return lab


def _start_with_retry(
    spec: NodeSpec, engine: Engine, srv: Server, template: Path, used: set[int],
    lock: threading.Lock, record: Callable[[LabNode], None],
) -> NodeSpec:
    """Start a node; if its port was taken meanwhile, pick another free port and retry."""
    for attempt in range(3):
        s = spec
        try:
            def on_spawn(pid: int, s: NodeSpec = s) -> None:
                record(LabNode(s.name, engine.kind, pid, "127.0.0.1", s.port, str(s.dir), str(s.cnf)))

            start_node(s, engine, srv, template, on_spawn=on_spawn)
            return s
        except LabError:
            if attempt == 2 or "Address already in use" not in procs.tail_log(spec.log, 20):
                raise
            with lock:
                port = procs.free_port(avoid=used)
                used.add(port)
            spec = replace(spec, port=port)
    raise LabError(f"could not start {srv.flavor.daemon} on a free port", remedy="retry")


def lab_down(directory: Path | str = DEFAULT_DIR) -> list[str]:
    """Kill every recorded process by PID (even after a crash) and remove the lab dir.

    SIGKILL, not a clean shutdown: the servers' data goes with the directory, and a clean
    one only costs time (a MySQL lab 2.0 s against 0.3 s, even with replication stopped
    and the dump threads killed first; a busy MySQL primary took 11-13 s)."""
    directory = Path(directory).absolute()
    stopped: list[str] = []
    if (directory / STATE_FILE).exists():
        try:
            lab = Lab.load(directory)
        except LabError:
            lab = Lab(directory)
        for n in lab.nodes:
            if procs.kill(n.pid, n.marker):
                stopped.append(n.name)
        # spawned by a `lab up` that died before recording them (see procs.servers_under)
        for pid in procs.servers_under(directory):
            if procs.kill(pid, str(directory)):
                stopped.append(f"pid {pid}")
        if lab.hosts:
            from roleswap.lab.hosts import teardown

            stopped += teardown(lab.hosts)  # after the processes: namespaces, links
    elif not directory.exists():
        return stopped
    elif any(directory.iterdir()) and not (directory / CONFIG_FILE).exists():
        raise LabError(f"{directory} does not look like a lab directory; not removing it",
                       remedy="pass the --dir you gave to `roleswap lab up`")
    shutil.rmtree(directory, ignore_errors=True)
    return stopped


def lab_status(directory: Path | str = DEFAULT_DIR) -> list[dict[str, Any]]:
    """Each recorded process: name, kind, pid, address, running, answering."""
    lab = Lab.load(Path(directory).absolute())
    rows = []
    for n in lab.nodes:
        running = n.alive()
        rows.append({
            "name": n.name, "kind": n.kind, "pid": n.pid, "address": f"{n.host}:{n.port}",
            "running": running, "answering": running and _answers(n),
        })
    return rows


def _answers(n: LabNode) -> bool:
    if n.kind in ("redis", "sshd", "haproxy"):
        return procs.port_open(n.host, n.port)
    try:
        root_connect_socket(Path(n.dir) / "mysqld.sock", timeout=1).close()
    except pymysql.err.MySQLError:
        return False
    return True
