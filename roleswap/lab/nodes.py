"""Node-level control of a running lab: kill, stop and start again one server.

For fault tests and rehearsals: ``kill_node`` delivers a real signal (SIGKILL by
default) to one lab process; ``start_node_again`` restarts a database node (MariaDB
or MySQL, whatever flavor the lab runs) from its
*existing* directory and ``my.cnf`` (never rewritten: whatever the config on disk
says, e.g. ``read_only``, is what the restarted server gets) on the same port, or a
Redis node on the same port (its data is lost: the lab runs Redis without
persistence).  The new PID is recorded in ``lab.json`` as soon as the process exists,
so ``roleswap lab down`` keeps working, and the call returns once the server answers.

Every signal is sent only after checking the PID's command line still carries the
node's marker (a recycled PID is never signalled).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from roleswap.errors import LabError
from roleswap.lab import procs
from roleswap.lab.engines import engine_for
from roleswap.lab.flavors import get_server
from roleswap.lab.lab import Lab, LabNode
from roleswap.lab.node import READY_TIMEOUT, spawn_and_wait
from roleswap.lab.redis_server import start_redis

__all__ = ["kill_node", "node_running", "start_node_again", "stop_node"]

DEATH_TIMEOUT = 10.0


def _load(lab_dir: Path | str, name: str) -> tuple[Lab, LabNode]:
    lab = Lab.load(Path(lab_dir).absolute())
    return lab, lab.node(name)


def node_running(lab_dir: Path | str, name: str) -> bool:
    """Whether node ``name``'s recorded process runs (a stopped, SIGSTOPped one counts)."""
    _lab, node = _load(lab_dir, name)
    return node.alive()


def kill_node(lab_dir: Path | str, name: str, sig: int = signal.SIGKILL,
              wait: bool = True) -> int:
    """Send ``sig`` to node ``name``'s process; return its PID.

    With SIGKILL (or SIGTERM) and ``wait``, returns only once the process is gone
    (reaped if it is our child), so a restart on the same port cannot race it.
    Other signals (SIGSTOP, SIGCONT, ...) return at once.
    """
    _lab, node = _load(lab_dir, name)
    if not procs.alive(node.pid, node.marker):
        raise LabError(f"lab node {name} (pid {node.pid}) is not running",
                       remedy=f"start it with start_node_again({str(lab_dir)!r}, {name!r})")
    os.kill(node.pid, sig)
    if wait and sig in (signal.SIGKILL, signal.SIGTERM):
        _wait_gone(node, DEATH_TIMEOUT if sig == signal.SIGKILL else 60.0)
    return node.pid


def stop_node(lab_dir: Path | str, name: str, timeout: float = 30.0) -> bool:
    """Stop node ``name`` cleanly (SIGTERM, SIGKILL after ``timeout``).  False if it was not running."""
    _lab, node = _load(lab_dir, name)
    return procs.stop(node.pid, node.marker, timeout)


def _wait_gone(node: LabNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(node.pid, os.WNOHANG)  # reap it if we started it (a zombie is not gone)
        if not procs.alive(node.pid):
            return
        if time.monotonic() > deadline:
            raise LabError(f"lab node {node.name} (pid {node.pid}) did not exit in {timeout:g}s",
                           remedy=f"see {node.dir}")
        time.sleep(0.005)


def start_node_again(lab_dir: Path | str, name: str, timeout: float = READY_TIMEOUT) -> int:
    """Start node ``name`` again, on the same port and from its own directory; return the new PID.

    Database node (any flavor): its server started exactly as the lab starts it
    (``--defaults-file=DIR/my.cnf`` first; through the cached loader for a fetched
    flavor; in the node's network namespace for a ``--hosts`` lab), with the config on
    disk left as it is; returns once root can log in over the socket (after crash
    recovery).  Redis: a new redis-server on the same port, empty.
    Refuses if the node's process still runs.
    """
    lab, node = _load(lab_dir, name)
    if procs.alive(node.pid, node.marker):
        raise LabError(f"lab node {name} is still running (pid {node.pid})",
                       remedy="kill_node or stop_node it first")

    def record(pid: int) -> None:
        fresh = Lab.load(lab.dir)  # re-read: never overwrite another change to lab.json
        for n in fresh.nodes:
            if n.name == name:
                n.pid = pid
        fresh.save()

    if node.kind == "redis":
        server = start_redis(Path(node.dir), host=node.host, port=node.port, timeout=timeout,
                             on_spawn=lambda r: record(r.pid))
        return server.pid
    if not node.is_db:
        raise LabError(f"lab node {name} is a {node.kind}; only database and redis nodes restart here",
                       remedy="restart it with the lab's own code")
    return _start_db(lab, node, timeout, record)


def _start_db(lab: Lab, node: LabNode, timeout: float, record: Callable[[int], None]) -> int:
    srv = get_server(lab.server, fetch=False)
    directory = Path(node.dir)
    cnf = directory / "my.cnf"
    if not cnf.is_file():
        raise LabError(f"lab node {node.name} has no {cnf}", remedy="rebuild the lab")
    engine = engine_for(node.kind)
    engine.clear_stale(directory)
    argv = engine.server_argv(srv, cnf)
    ns = (lab.hosts.get("hosts") or {}).get(node.name, {}).get("ns") if lab.hosts else None
    if ns:
        argv = ["ip", "netns", "exec", str(ns), *argv]
    return spawn_and_wait(argv, srv.flavor.daemon, node.name, directory, record, timeout,
                          what=" on restart")
