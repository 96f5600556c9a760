"""One lab database node, whatever its engine: spec, accounts, root access, start.

What differs between MariaDB and MySQL nodes (template datadir, my.cnf, accounts,
start argv) is an :class:`Engine` (:mod:`roleswap.lab.mariadb`,
:mod:`roleswap.lab.mysql`); what is the same lives here:

* every node has its own directory (datadir, socket, pid file, error log, my.cnf);
* the datadir is a copy of a per-version template (a copy is ~0.1 s; initialising
  is 0.5-3 s), made once per user in ``~/.cache/roleswap/`` (:func:`template_dir`);
* every node's my.cnf starts it read-only (the primary's too): the primary is made
  writable at run time, so no restarted server is ever writable by accident;
* root logs in over the node's unix socket without a password (no TCP root).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pymysql

from roleswap.errors import LabError
from roleswap.lab import procs
from roleswap.lab.flavors import Server

READY_TIMEOUT = 30.0
DB_KINDS = ("mariadb", "mysql")  # LabNode.kind of database nodes (= the engine's name)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    server_id: int
    port: int
    dir: Path
    bind: str = "127.0.0.1"
    replica: bool = False  # False: the primary, made writable after bootstrap
    gtid: bool = True

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def socket(self) -> Path:
        return self.dir / "mysqld.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "mysqld.pid"

    @property
    def cnf(self) -> Path:
        return self.dir / "my.cnf"

    @property
    def log(self) -> Path:
        return self.dir / "error.log"


@dataclass(frozen=True)
class Accounts:
    control_user: str
    control_password: str
    repl_user: str
    repl_password: str
    app_user: str
    app_password: str
    database: str = "app"


# The application account must NOT be able to bypass read_only (no ALL, no READ ONLY
# ADMIN, no SUPER, no CONNECTION_ADMIN): the same list on every engine.
APP_GRANTS = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, "
    "LOCK TABLES, EXECUTE"
)


class Engine(Protocol):
    """How one engine's nodes are initialised, configured, started and bootstrapped."""

    kind: str  # "mariadb" | "mysql"
    control_grants: str  # global privileges of the control account (README lists them)
    repl_grants: str

    def ensure_template(self, server: Server) -> Path:
        """A pristine datadir for ``server``'s version, created once (atomically)."""
        ...

    def prepare(self, spec: NodeSpec, server: Server, template: Path) -> None:
        """Copy the template to the node's datadir (if absent) and write its my.cnf."""
        ...

    def server_argv(self, server: Server, cnf: Path) -> list[str]:
        """argv starting the node from ``cnf`` (``--defaults-file`` the first argument)."""
        ...

    def bootstrap(self, spec: NodeSpec, acc: Accounts) -> None:
        """Create the accounts and databases without binlogging them; leave the node read-only."""
        ...

    def clear_stale(self, directory: Path) -> None:
        """Before a restart: remove what a killed server left that would stop a new one."""
        ...


def template_dir(engine: str, version: str) -> Path:
    """``~/.cache/roleswap/<engine>-template-<version>-uid<uid>`` ($XDG_CACHE_HOME respected)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "roleswap" / f"{engine}-template-{version}-uid{os.geteuid()}"


def build_template(tpl: Path, make: Callable[[Path], None]) -> Path:
    """Run ``make(tmp)`` into a temporary sibling of ``tpl`` and rename it into place.

    Two processes racing both build; the loser's copy is discarded (both are equal).
    """
    tpl.parent.mkdir(parents=True, exist_ok=True)
    tmp = tpl.with_name(f"{tpl.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(tpl)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return tpl


def copy_template(template: Path, spec: NodeSpec) -> bool:
    """Copy ``template`` to the node's datadir unless it exists; True if copied."""
    spec.dir.mkdir(parents=True, exist_ok=True)
    if spec.datadir.exists():
        return False
    shutil.copytree(template, spec.datadir, symlinks=True)
    return True


def os_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def root_argv_tail() -> list[str]:
    """``--user=root`` when we are root (both servers refuse to run as root otherwise)."""
    return ["--user=root"] if os.geteuid() == 0 else []


def start_node(
    spec: NodeSpec, engine: Engine, server: Server, template: Path,
    on_spawn: Callable[[int], None] = lambda _pid: None, wrap: list[str] | None = None,
) -> int:
    """Prepare the node, start its server, wait until root can log in; return the PID.

    ``on_spawn(pid)`` runs right after the process exists, before waiting, so the
    caller can record the PID and stop it even if we crash while waiting.  ``wrap``
    prefixes the argv (``ip netns exec NS`` for a hosts lab).
    """
    engine.prepare(spec, server, template)
    argv = [*(wrap or []), *engine.server_argv(server, spec.cnf)]
    return spawn_and_wait(argv, server.flavor.daemon, spec.name, spec.dir, on_spawn)


def spawn_and_wait(argv: list[str], program: str, name: str, directory: Path,
                   on_spawn: Callable[[int], None], timeout: float = READY_TIMEOUT,
                   what: str = "") -> int:
    """Spawn node ``name``'s ``program`` from ``argv``; return its PID once root logs in
    over ``directory/mysqld.sock``; stop it and raise LabError (with its log) otherwise."""
    log = directory / "error.log"
    cnf = directory / "my.cnf"
    socket = directory / "mysqld.sock"
    proc = procs.spawn(argv, directory / f"{program}.out")
    on_spawn(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"{program} for {name} exited with code {proc.returncode}{what}: "
                           f"{procs.tail_log(log)}", remedy=f"see {log}")
        if socket.exists():  # may be a killed server's stale socket: connect decides
            try:
                root_connect_socket(socket, timeout=1.0).close()
                return proc.pid
            except pymysql.err.OperationalError:
                pass
        time.sleep(0.01)
    procs.stop(proc.pid, str(cnf), timeout=5)
    raise LabError(f"{program} for {name} did not answer within {timeout:g}s{what}", remedy=f"see {log}")


def root_connect(spec: NodeSpec, timeout: float = 5.0) -> pymysql.connections.Connection:
    """Root over the node's unix socket (root has no password and no TCP access in the lab)."""
    return root_connect_socket(spec.socket, timeout)


def root_connect_socket(socket: Path | str, timeout: float = 5.0) -> pymysql.connections.Connection:
    return pymysql.connect(
        unix_socket=str(socket), user="root", password="", connect_timeout=timeout,
        autocommit=True, ssl_disabled=True,
    )


def create_accounts(cur: pymysql.cursors.Cursor, acc: Accounts, control_grants: str,
                    repl_grants: str) -> None:
    """The control, replication and app accounts plus the app and roleswap databases.

    Run by :meth:`Engine.bootstrap` in a session with ``sql_log_bin=0`` on every node
    before replication starts, so no replica carries GTIDs of its own.
    """
    for user, password, grants, on in (
        (acc.control_user, acc.control_password, control_grants, "*.*"),
        (acc.repl_user, acc.repl_password, repl_grants, "*.*"),
        (acc.app_user, acc.app_password, APP_GRANTS, f"`{acc.database}`.*"),
    ):
        cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password))
        # identifiers cannot be parameters; names come from the lab, not from users
        cur.execute(f"GRANT {grants} ON {on} TO %s@'%%'", (user,))
    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{acc.database}`")
    cur.execute("CREATE DATABASE IF NOT EXISTS `roleswap`")
    cur.execute("GRANT ALL ON `roleswap`.* TO %s@'%%'", (acc.control_user,))
