"""`roleswap lab up | down | status`: a local topology of real servers.

State lives in ``DIR/lab.json`` (written after *each* process starts, so a
crash half-way still leaves enough for ``lab down`` to stop everything by PID).
``DIR/roleswap.toml`` is a complete roleswap config for the lab.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pymysql

from roleswap.errors import LabError
from roleswap.lab import procs
from roleswap.lab.flavors import DEFAULT_SERVER, Server, flavor, get_server
from roleswap.lab.node import (
    DB_KINDS,
    Accounts,
    Engine,
    NodeSpec,
    engine_for,
    root_connect_socket,
    start_node,
)
from roleswap.lab.redis_server import start_redis
from roleswap.lab.replication import make_writable, prove_replication, start_replication

STATE_FILE = "lab.json"
CONFIG_FILE = "roleswap.toml"
DEFAULT_DIR = ".lab"
STOP_TIMEOUT = 30.0  # SIGTERM, then SIGKILL: a busy MySQL primary took 11-13 s to stop


@dataclass
class LabNode:
    name: str
    kind: str  # "mariadb" | "mysql" (database nodes, see node.DB_KINDS) | "redis" | "sshd"
    pid: int
    host: str
    port: int
    dir: str
    marker: str  # must appear in /proc/PID/cmdline before we signal the PID

    def alive(self) -> bool:
        return procs.alive(self.pid, self.marker)

    @property
    def is_db(self) -> bool:
        """A database server (MariaDB or MySQL), as opposed to redis or sshd."""
        return self.kind in DB_KINDS


@dataclass
class Lab:
    dir: Path
    nodes: list[LabNode] = field(default_factory=list)
    cluster: str = "lab"
    gtid: bool = True
    # `lab up --hosts`: namespaces, links, addresses (see roleswap.lab.hosts); {} otherwise
    hosts: dict[str, Any] = field(default_factory=dict)
    server: str = DEFAULT_SERVER  # the flavor (roleswap.lab.flavors) every database node runs

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"no lab node named {name!r}", remedy="see `roleswap lab status`")

    def save(self) -> None:
        data = {"cluster": self.cluster, "gtid": self.gtid, "server": self.server,
                "nodes": [asdict(n) for n in self.nodes], "hosts": self.hosts}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_path)

    @classmethod
    def load(cls, directory: Path) -> Lab:
        path = directory / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(
                f"no lab in {directory} ({STATE_FILE} not found)",
                remedy="start one with `roleswap lab up`, or pass --dir",
            ) from None
        except (OSError, ValueError) as e:
            raise LabError(f"cannot read {path}: {e}", remedy=f"inspect or delete {path}") from None
        nodes = [LabNode(**n) for n in data.get("nodes", [])]
        return cls(Path(directory), nodes, data.get("cluster", "lab"), data.get("gtid", True),
                   data.get("hosts") or {}, data.get("server") or DEFAULT_SERVER)


def lab_up(
    directory: Path | str = DEFAULT_DIR,
    replicas: int = 2,
    gtid: bool = True,
    cluster: str = "lab",
    log: Any = None,
    hosts: bool = False,
    subnet: str | None = None,
    server: str = DEFAULT_SERVER,
) -> Lab:
    """Start db1 (primary) + ``replicas`` replicas + redis; return when replication is proven.

    ``server`` is a flavor of :mod:`roleswap.lab.flavors` (``mariadb-10.11``, the host's
    package; ``mariadb-11.8``; ``mysql-9.7``); a flavor that is not the host's own is
    fetched into the per-user cache first (once; progress goes to ``log``).
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
    procs.require(*fl.host_programs, "redis-server")
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
        from roleswap.lab.hosts import lab_up_hosts

        lab_h: Lab = lab_up_hosts(directory, replicas, gtid, cluster, subnet, say, srv)
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
        lock = threading.Lock()

        def record(node: LabNode) -> None:
            with lock:
                lab.nodes[:] = [n for n in lab.nodes if n.name != node.name] + [node]
                lab.save()

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
    except BaseException:
        lab_down(directory)
        raise
    say(f"lab up ({fl.name}, {srv.version}) in {time.monotonic() - t0:.1f}s: {directory}")
    return lab


def ensure_template(engine: Engine, srv: Server, say: Callable[[str], None]) -> Path:
    """The engine's template datadir for ``srv``, saying so when it is made (once per version)."""
    t0 = time.monotonic()
    template = engine.ensure_template(srv)
    if time.monotonic() - t0 > 0.3:
        say(f"initialised a {srv.flavor.name} template datadir in {time.monotonic() - t0:.1f}s "
            f"(once per version): {template}")
    return template


def new_accounts() -> Accounts:
    """The lab's three accounts with fresh random passwords."""
    return Accounts(control_user="roleswap", control_password=_password(),
                    repl_user="repl", repl_password=_password(),
                    app_user="app", app_password=_password())


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


def _password() -> str:
    return secrets.token_urlsafe(18)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(lab: Lab, acc: Accounts) -> Path:
    redis = lab.node("redis")
    lines = [
        "# roleswap config for the local lab (written by `roleswap lab up`).",
        "# Roles are read from the servers; this file only says where they are.",
        f"# servers: {lab.server}",
        f"cluster = {_toml_str(lab.cluster)}",
        "",
        "[mysql]  # the control account roleswap uses",
        f"user = {_toml_str(acc.control_user)}",
        f"password = {_toml_str(acc.control_password)}",
        "connect_timeout = 2",
        "",
        "[replication]  # the account replicas use to connect to their source",
        f"user = {_toml_str(acc.repl_user)}",
        f"password = {_toml_str(acc.repl_password)}",
        "",
        "[redis]",
        f"url = {_toml_str(f'redis://{redis.host}:{redis.port}/0')}",
        "",
        "[intermission]",
        f"scope = {_toml_str(lab.cluster)}",
        "",
        "[switch]",
        'method = "endpoint"',
        "",
        "[journal]  # local mirror of the swap journal (the main copy is in Redis)",
        f"dir = {_toml_str(str(lab.dir / 'journal'))}",
        "",
        "[lab]",
        f"dir = {_toml_str(str(lab.dir))}",
        f"app_user = {_toml_str(acc.app_user)}",
        f"app_password = {_toml_str(acc.app_password)}",
        f"database = {_toml_str(acc.database)}",
        "",
    ]
    for n in lab.nodes:
        if n.is_db:
            lines += [f"[servers.{n.name}]", f"host = {_toml_str(n.host)}", f"port = {n.port}",
                      f"socket = {_toml_str(str(Path(n.dir) / 'mysqld.sock'))}", ""]
    path = lab.config_path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    return path


def lab_down(directory: Path | str = DEFAULT_DIR) -> list[str]:
    """Stop every recorded process by PID (even after a crash) and remove the lab dir."""
    directory = Path(directory).absolute()
    stopped: list[str] = []
    if (directory / STATE_FILE).exists():
        try:
            lab = Lab.load(directory)
        except LabError:
            lab = Lab(directory)
        # database servers in parallel (a MySQL shutdown takes seconds), then the rest
        dbs = [n for n in lab.nodes if n.is_db]
        mysql_socks = [Path(n.dir) / "mysqld.sock" for n in dbs if n.kind == "mysql" and n.alive()]
        if mysql_socks:
            from roleswap.lab.mysql import quiesce

            quiesce(mysql_socks)
        with ThreadPoolExecutor(max(1, len(dbs))) as pool:
            done = list(pool.map(lambda n: procs.stop(n.pid, n.marker, timeout=STOP_TIMEOUT), dbs))
        stopped += [n.name for n, was in zip(dbs, done, strict=True) if was]
        for n in lab.nodes:
            if not n.is_db and procs.stop(n.pid, n.marker, timeout=15):
                stopped.append(n.name)
        # spawned by a `lab up` that died before recording them (see procs.servers_under)
        for pid in procs.servers_under(directory):
            if procs.stop(pid, str(directory), timeout=STOP_TIMEOUT):
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
    if n.kind in ("redis", "sshd"):
        return procs.port_open(n.host, n.port)
    try:
        root_connect_socket(Path(n.dir) / "mysqld.sock", timeout=1).close()
    except pymysql.err.MySQLError:
        return False
    return True
