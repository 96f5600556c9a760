"""What a test gets: a running cluster of real servers and what it needs to talk to them.

:class:`RunningCluster` is the same whichever backend started it (local processes or
containers): addresses reachable from the test process, a complete roleswap config,
the application account, and read-only helpers that ask the servers *now* (roles are
never cached: after a swap, :meth:`RunningCluster.primary` names the new primary).
Nothing here prints or reprs a password.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql
from pymysql.connections import Connection

from roleswap.config import Config, load_config
from roleswap.errors import LabError

if TYPE_CHECKING:
    from roleswap.api import Cluster as RoleswapCluster

__all__ = ["AppAccount", "ClusterError", "RunningCluster"]


class ClusterError(LabError):
    """A test cluster could not be started (or read); ``remedy`` says what to do.

    Unlike other roleswap errors its ``str()`` includes the remedy, because pytest shows
    ``str(exception)`` and the fix is the useful part.
    """

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.remedy})" if self.remedy else self.message


@dataclass(frozen=True)
class AppAccount:
    """The application account: DML/DDL on ``database`` only, so it cannot write through
    ``read_only``, like a real application.  The password is left out of the repr."""

    user: str
    password: str = field(repr=False)
    database: str

    def __iter__(self) -> Iterator[str]:
        """``user, password, database = cluster.app_account``"""
        return iter((self.user, self.password, self.database))


@dataclass(frozen=True, eq=False)
class RunningCluster:
    """A started test cluster; valid until its :func:`~roleswap.testing.start_cluster`
    block (or fixture) ends.

    * ``servers``: server name (``db1``..``dbN``, ``db1`` the primary at start) ->
      ``(host, port)`` reachable from the test process over TCP;
    * ``config_path``: a complete roleswap TOML: ``roleswap -c PATH --from A --to B``;
    * ``redis_url``: the cluster's own Redis (no password; loopback only);
    * ``backend``: ``"process"`` or ``"docker"``; ``backend_reason`` says why (``auto``);
    * ``server``: the flavor (``mariadb-10.11``, ``mariadb-11.8``, ``mysql-9.7``);
    * ``id``: a short random id (docker: the value of the label
      ``org.roleswap.testing.cluster`` on its containers and network).
    """

    id: str
    server: str
    backend: str
    backend_reason: str
    replicas: int
    gtid: bool
    config_path: Path
    servers: Mapping[str, tuple[str, int]]
    redis_url: str
    app_account: AppAccount
    # backend-specific: an admin (root) connection to a named node
    _admin: Callable[[str], Connection[Any]] = field(repr=False)

    # -- connections -------------------------------------------------------------------
    def admin(self, name: str) -> Connection[Any]:
        """An open autocommit connection with every privilege (root) to server ``name``.

        Close it before a swap (``with cluster.admin("db1") as conn:``): roleswap's
        preflight refuses to swap while a session that can write through ``read_only``
        is open on ``--from``.
        """
        self._known(name)
        return self._admin(name)

    def app(self, name: str | None = None, *, autocommit: bool = True,
            timeout: float = 5.0) -> Connection[Any]:
        """A connection of the application account to ``name`` (default: the primary now),
        in its database."""
        host, port = self.servers[self._known(name) if name else self.primary()]
        a = self.app_account
        return pymysql.connect(host=host, port=port, user=a.user, password=a.password,
                               database=a.database, autocommit=autocommit, ssl_disabled=True,
                               connect_timeout=timeout, read_timeout=30, write_timeout=30)

    # -- what the servers say now ---------------------------------------------------------
    @cached_property
    def config(self) -> Config:
        """The parsed roleswap config (addresses and credentials only; never roles)."""
        return load_config(self.config_path)

    def api(self) -> RoleswapCluster:
        """roleswap's Python API on this cluster: ``roleswap_cluster.api().swap("db1", "db2")``."""
        from roleswap.api import Cluster

        return Cluster(self.config)

    def control(self, name: str) -> Connection[Any]:
        """A connection of roleswap's control account to ``name``: reads through it do not
        look like a session that could write through the fence to preflight."""
        from roleswap.mysql.conn import connect

        cfg = self.config
        return connect(cfg.server(self._known(name)), cfg.mysql, timeout=cfg.connect_timeout,
                       tls=cfg.tls, read_timeout=60)

    def writable(self) -> list[str]:
        """The servers whose ``@@GLOBAL.read_only`` is 0 now, in name order."""
        out = []
        for name in sorted(self.servers):
            with contextlib.closing(self.control(name)) as conn, \
                    conn.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SELECT @@GLOBAL.read_only")
                row = cur.fetchone()
                if row is not None and int(row[0]) == 0:
                    out.append(name)
        return out

    def primary(self) -> str:
        """The name of the single writable server, read from the servers now.

        Raises :class:`ClusterError` when none or several are writable (never guesses).
        """
        writable = self.writable()
        if len(writable) != 1:
            raise ClusterError(f"expected exactly one writable server, found {writable or 'none'}",
                               remedy="see `roleswap -c CONFIG status`")
        return writable[0]

    def health_problems(self) -> list[str]:
        """What ``roleswap status --check-health`` fails on, plus every server that does
        not replicate directly from the primary: [] when healthy."""
        from roleswap.status import status_data

        data = status_data(self.config)
        problems: list[str] = list(data["health"]["problems"])
        writable = data["writable"]
        if len(writable) == 1:
            for row in data["servers"]:
                if row["name"] != writable[0] and row.get("reachable") and row.get("source") != writable[0]:
                    problems.append(f"{row['name']} replicates from {row.get('source') or 'nothing'}, "
                                    f"not from the primary {writable[0]}")
        return problems

    def wait_replicas(self, timeout: float = 30.0) -> None:
        """Until every replica has applied everything the primary has logged (by GTID, or
        by binlog coordinates without GTID); :class:`ClusterError` after ``timeout`` s."""
        from roleswap.testing.prove import wait_applied

        primary = self.primary()
        conns = {n: self.control(n) for n in self.servers}
        try:
            problems = wait_applied(conns, primary, timeout)
        finally:
            for c in conns.values():
                with contextlib.suppress(Exception):
                    c.close()
        if problems:
            raise ClusterError("; ".join(problems), remedy="see `roleswap -c CONFIG status`")

    def _known(self, name: str) -> str:
        if name not in self.servers:
            raise ValueError(f"no server {name!r} in this cluster; use one of: "
                             f"{', '.join(sorted(self.servers))}")
        return name


def connect_retry(connect: Callable[[], Connection[Any]], timeout: float,
                  what: str) -> Connection[Any]:
    """``connect()`` until it succeeds or ``timeout`` s pass (a server that just said
    "ready" may still refuse for a few ms behind a port proxy)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect()
        except pymysql.err.OperationalError as e:
            if time.monotonic() >= deadline:
                raise ClusterError(f"cannot connect to {what}: {e.args[-1] if e.args else e}",
                                   remedy="see the server's log") from None
            time.sleep(0.1)
