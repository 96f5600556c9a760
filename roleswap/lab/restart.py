"""``roleswap lab restart NAME [--set KEY=VALUE ...]``: a maintenance restart of one node.

Stops the node cleanly (SIGTERM, as a service manager does), optionally writes changed server options into its
``my.cnf`` (the kind of change that needs a restart, e.g. ``innodb_buffer_pool_size``),
starts it again on the same port from the same datadir, and returns once it answers
and, for a replica, once both replication threads run again.  A primary comes back
read-only (every lab ``my.cnf`` says so): the returned text says so, and
``roleswap recover`` reopens it.  Keys and values are checked before anything stops.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pymysql

from roleswap.errors import LabError, UsageError
from roleswap.lab.node import root_connect_socket
from roleswap.lab.nodes import start_node_again, stop_node
from roleswap.lab.replication import replica_of
from roleswap.lab.state import Lab
from roleswap.mysql.dialect import ReplicaStatus

_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.:/+,-]{1,200}$")
# the lab's own wiring: changing these would break the node or the lab's bookkeeping
MANAGED = {"port", "socket", "datadir", "pid-file", "pid_file", "server-id", "server_id", "basedir",
           "bind-address", "bind_address", "log-error", "log_error", "user", "plugin_dir", "plugin-dir"}


def parse_settings(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["innodb_buffer_pool_size=64M"]`` -> {key: value}; UsageError names a bad item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not _KEY.match(key) or not _VALUE.match(value.strip()):
            raise UsageError(f"--set {item!r} is not KEY=VALUE with a server option name and a plain value",
                             remedy="e.g. --set innodb_buffer_pool_size=64M (letters, digits, _ . : / + , -)")
        if key in MANAGED:
            raise UsageError(f"--set {key}: the lab manages {key} itself",
                             remedy="change a server option the lab does not wire (e.g. a buffer size)")
        out[key] = value.strip()
    return out


SERVER_SECTIONS = ("mysqld", "mariadbd", "server", "mariadb")  # what the servers read


def with_settings(text: str, settings: dict[str, str]) -> str:
    """``text`` (a my.cnf) with each key's line in the server section replaced, or added
    at the top of the first server section.  Raises LabError when there is none."""
    lines = text.splitlines()
    norm = {k.replace("-", "_"): v for k, v in settings.items()}
    done: set[str] = set()
    section = ""
    first = None
    out: list[str] = []
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip()
            if section in SERVER_SECTIONS and first is None:
                first = len(out) + 1
        key = s.split("=", 1)[0].strip().replace("-", "_") if "=" in s else ""
        if section in SERVER_SECTIONS and key in norm:
            out.append(f"{key}={norm[key]}")
            done.add(key)
            continue
        out.append(line)
    missing = [k for k in norm if k not in done]
    if missing:
        if first is None:
            raise LabError("the node's my.cnf has no server section ([mysqld] / [mariadbd])",
                           remedy="rebuild the lab")
        out[first:first] = [f"{k}={norm[k]}" for k in missing]
    return "\n".join(out) + "\n"


def restart(lab_dir: Path | str, name: str, settings: dict[str, str] | None = None,
            timeout: float = 60.0) -> str:
    """Restart database node ``name`` (see the module docstring); a one-line account of it."""
    lab = Lab.load(Path(lab_dir).absolute())
    node = lab.node(name)
    if not node.is_db:
        raise UsageError(f"lab node {name} is a {node.kind}; `lab restart` restarts database servers",
                         remedy=f"use one of: {', '.join(n.name for n in lab.nodes if n.is_db)}")
    cnf = Path(node.dir) / "my.cnf"
    t0 = time.monotonic()
    new_text = with_settings(cnf.read_text(), settings) if settings else None  # refuse before stopping
    was = "replica" if _replica(lab, name) else "primary"
    stop_node(lab.dir, name)
    if new_text is not None:
        tmp = cnf.with_suffix(".tmp")
        tmp.write_text(new_text)
        tmp.replace(cnf)
    pid = start_node_again(lab.dir, name, timeout=timeout)
    state = _wait_replicating(lab, name, was, timeout)
    changed = f", {', '.join(f'{k}={v}' for k, v in settings.items())}" if settings else ""
    return f"{name} restarted (pid {pid}{changed}) in {time.monotonic() - t0:.1f}s; {state}"


def _replica(lab: Lab, name: str) -> ReplicaStatus | None:
    """``name``'s replication channel (None: no channel, or not answering)."""
    try:
        conn = root_connect_socket(Path(lab.node(name).dir) / "mysqld.sock", timeout=5)
    except pymysql.MySQLError:
        return None
    try:
        with conn.cursor() as cur:
            return replica_of(cur)
    finally:
        conn.close()


def _wait_replicating(lab: Lab, name: str, was: str, timeout: float) -> str:
    if was == "primary":
        return ("it was the primary and came back read-only (its my.cnf says so): "
                "`roleswap recover` reopens it")
    deadline = time.monotonic() + timeout
    while True:
        r = _replica(lab, name)
        if r is not None and r.running:
            return "replicating again, both threads running"
        if time.monotonic() > deadline:
            raise LabError(f"{name} restarted but its replication threads are not both running "
                           f"after {timeout:g}s",
                           remedy=f"see `roleswap status` and {lab.node(name).dir}/error.log")
        time.sleep(0.05)
