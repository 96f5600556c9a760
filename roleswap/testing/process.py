"""The process backend: the cluster is a `roleswap lab` in a private temporary directory.

The servers run as local processes on free 127.0.0.1 ports (the same code as
``roleswap lab up``: every node read-only in its my.cnf, the primary made writable at
run time, replication proven before it returns).  The lab's own config is already a
complete roleswap TOML.  ``lab_down`` stops every process by PID and removes the
directory, whatever happened in between.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
from pymysql.connections import Connection

from roleswap.config import load_config
from roleswap.lab import lab_down, lab_up
from roleswap.lab.flavors import DEFAULT_SERVER
from roleswap.testing.cluster import AppAccount, ClusterError, RunningCluster


@contextmanager
def process_cluster(server: str, replicas: int, gtid: bool, reason: str,
                    log: Callable[[str], None]) -> Iterator[RunningCluster]:
    """A lab of ``replicas`` + 1 servers of flavor ``server`` and a Redis, torn down at exit.

    A flavor that is not the host's own is fetched into the per-user cache on first use
    (progress goes to ``log``).
    """
    lab_dir = Path(tempfile.mkdtemp(prefix="rsw-", dir=_temp_parent(log)))
    try:
        kwargs: dict[str, Any] = {"replicas": replicas, "gtid": gtid, "log": log}
        if server != DEFAULT_SERVER:
            kwargs["server"] = server
        lab = lab_up(lab_dir, **kwargs)  # never half-starts: it cleans up after itself
        cfg = load_config(lab.config_path)
        if cfg.lab is None:  # lab_up always writes [lab]; a config without it is a bug
            raise ClusterError(f"{lab.config_path} has no [lab] section (application account)",
                               remedy="report this as a roleswap bug")
        sockets = {n.name: Path(n.dir) / "mysqld.sock" for n in lab.nodes if n.is_db}

        def admin(name: str) -> Connection[Any]:
            # root has no TCP access in the lab: its unix socket, passwordless (as
            # roleswap.lab.node.root_connect_socket, with a read timeout above any wait)
            return pymysql.connect(unix_socket=str(sockets[name]), user="root", password="",
                                   connect_timeout=5, read_timeout=60, autocommit=True,
                                   ssl_disabled=True)

        redis = lab.node("redis")
        yield RunningCluster(
            id=lab_dir.name.removeprefix("rsw-"), server=lab.server, backend="process",
            backend_reason=reason, replicas=replicas, gtid=gtid, config_path=lab.config_path,
            servers={name: (s.host, s.port) for name, s in sorted(cfg.servers.items())},
            redis_url=f"redis://{redis.host}:{redis.port}/0",
            app_account=AppAccount(cfg.lab.app_user, cfg.lab.app_password.reveal(), cfg.lab.database),
            _admin=admin,
        )
    finally:
        try:
            lab_down(lab_dir)
        finally:
            shutil.rmtree(lab_dir, ignore_errors=True)  # lab_down removes it; a crash may not


# A server's unix socket path must fit in sun_path (107 bytes): DIR/db8/mysqld.sock.
MAX_PARENT = 107 - len("/rsw-12345678/db8/mysqld.sock") - 8  # some room to spare
SHORT_PARENT = "/tmp"  # noqa: S108 - mkdtemp makes a private (0700) directory with a random name


def _temp_parent(log: Callable[[str], None]) -> str:
    """Where the lab's directory goes: the usual temporary directory ($TMPDIR), or /tmp
    when that path is too long for the servers' unix sockets."""
    parent = tempfile.gettempdir()
    if len(parent) > MAX_PARENT and os.access(SHORT_PARENT, os.W_OK):
        log(f"{parent} is too long for unix socket paths; the cluster's directory goes in {SHORT_PARENT}")
        return SHORT_PARENT
    return parent
