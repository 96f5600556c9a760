"""One lab MariaDB instance: template datadir, my.cnf, start, bootstrap SQL, stop.

The template datadir (``mariadb-install-db`` output, no binlog yet) is made once
per MariaDB version and copied per node, which turns a ~0.6 s install into a
~0.1 s copy.  Accounts are created on every node with ``sql_log_bin=0`` *before*
replication starts, so replicas carry no local GTIDs (no errant transactions).
Every node's my.cnf says ``read_only=1`` (the primary's too): the primary is made
writable at run time (:func:`make_writable`), so no restarted server is ever
writable by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pymysql

from roleswap.errors import LabError
from roleswap.lab import procs

READY_TIMEOUT = 30.0


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


def mariadb_version(mariadbd: str) -> str:
    out = subprocess.run([mariadbd, "--version"], capture_output=True, text=True, check=False)
    # "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
    words = out.stdout.split()
    return words[2] if len(words) > 2 else "unknown"


def template_dir(version: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "roleswap" / f"mariadb-template-{version}-uid{os.geteuid()}"


def ensure_template(bins: dict[str, str]) -> Path:
    """Return a pristine datadir for this MariaDB version, creating it once (atomically)."""
    tpl = template_dir(mariadb_version(bins["mariadbd"]))
    if (tpl / "mysql").is_dir():
        return tpl
    tpl.parent.mkdir(parents=True, exist_ok=True)
    tmp = tpl.with_name(f"{tpl.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = [
        bins["mariadb-install-db"], "--no-defaults", f"--datadir={tmp}",
        f"--user={_os_user()}", "--auth-root-authentication-method=normal",
        "--skip-test-db", "--skip-name-resolve",
    ]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise LabError(f"mariadb-install-db failed: {tail}", remedy="check the mariadb-server install")
    try:
        tmp.rename(tpl)
    except OSError:
        # another process won the race; its template is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return tpl


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def write_cnf(spec: NodeSpec) -> None:
    lines = [
        "[mariadbd]",
        f"datadir={spec.datadir}",
        f"socket={spec.socket}",
        f"pid-file={spec.pidfile}",
        f"port={spec.port}",
        f"bind-address={spec.bind}",
        f"server_id={spec.server_id}",
        f"log_error={spec.log}",
        "log_bin=mysql-bin",
        "relay_log=relay-bin",
        "binlog_format=ROW",
        "log_slave_updates=1",
        f"report_host={spec.bind.split(',')[0]}",
        f"report_port={spec.port}",
        "skip_name_resolve=1",
        "innodb_buffer_pool_size=32M",
        "innodb_log_file_size=16M",
        "performance_schema=OFF",
        "max_connections=200",
        "character_set_server=utf8mb4",
        # keep the lab honest about durability: acknowledged means on disk
        "sync_binlog=1",
        "innodb_flush_log_at_trx_commit=1",
    ]
    if spec.gtid:
        lines.append("gtid_strict_mode=1")
    # EVERY node starts read-only, the primary too: a server that restarts (crash, reboot)
    # must never come back as a second writable primary.  lab up makes the primary
    # writable at run time (make_writable), as roleswap's promote step does.
    lines.append("read_only=1")
    lines += ["", "[client]", f"socket={spec.socket}", f"port={spec.port}", ""]
    spec.cnf.write_text("\n".join(lines))


def start_node(
    spec: NodeSpec, bins: dict[str, str], template: Path,
    on_spawn: Callable[[int], None] = lambda _pid: None,
) -> int:
    """Copy the template, start mariadbd, wait until it answers; return its PID.

    ``on_spawn(pid)`` runs right after the process exists, before waiting, so the
    caller can record the PID and stop it even if we crash while waiting.
    """
    spec.dir.mkdir(parents=True, exist_ok=True)
    if not spec.datadir.exists():
        shutil.copytree(template, spec.datadir, symlinks=True)
    write_cnf(spec)
    # --defaults-file must be the first argument or Debian's /etc/mysql config leaks in.
    argv = [bins["mariadbd"], f"--defaults-file={spec.cnf}"]
    if os.geteuid() == 0:
        argv.append("--user=root")
    proc = procs.spawn(argv, spec.dir / "mariadbd.out")
    on_spawn(proc.pid)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(
                f"mariadbd for {spec.name} exited with code {proc.returncode}: {procs.tail_log(spec.log)}",
                remedy=f"see {spec.log}",
            )
        if spec.socket.exists():
            try:
                root_connect(spec, timeout=1.0).close()
                return proc.pid
            except pymysql.err.OperationalError:
                pass
        time.sleep(0.01)
    procs.stop(proc.pid, str(spec.cnf), timeout=5)
    raise LabError(f"mariadbd for {spec.name} did not answer in {READY_TIMEOUT:.0f} s",
                   remedy=f"see {spec.log}")


def root_connect(spec: NodeSpec, timeout: float = 5.0) -> pymysql.connections.Connection:
    """Root over the node's unix socket (root has no password and no TCP access in the lab)."""
    return root_connect_socket(spec.socket, timeout)


def root_connect_socket(socket: Path | str, timeout: float = 5.0) -> pymysql.connections.Connection:
    return pymysql.connect(
        unix_socket=str(socket), user="root", password="", connect_timeout=timeout,
        autocommit=True, ssl_disabled=True,
    )


@dataclass(frozen=True)
class Accounts:
    control_user: str
    control_password: str
    repl_user: str
    repl_password: str
    app_user: str
    app_password: str
    database: str = "app"


# What the control account needs on MariaDB 10.11: READ ONLY ADMIN to set and bypass
# read_only, the replication admin privileges, and SELECT for checksums/verification.
CONTROL_GRANTS = (
    "SELECT, RELOAD, PROCESS, SUPER, REPLICATION SLAVE, BINLOG MONITOR, READ ONLY ADMIN, "
    "REPLICATION MASTER ADMIN, REPLICATION SLAVE ADMIN, SLAVE MONITOR, CONNECTION ADMIN, "
    "BINLOG ADMIN"
)
# The application account must NOT be able to bypass read_only (no ALL, no READ ONLY ADMIN).
APP_GRANTS = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, "
    "LOCK TABLES, EXECUTE"
)


def bootstrap(spec: NodeSpec, acc: Accounts) -> None:
    """Create accounts and the app database without writing to the binlog."""
    conn = root_connect(spec)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin=0")
            for user, password, grants, on in (
                (acc.control_user, acc.control_password, CONTROL_GRANTS, "*.*"),
                (acc.repl_user, acc.repl_password, "REPLICATION SLAVE, SLAVE MONITOR", "*.*"),
                (acc.app_user, acc.app_password, APP_GRANTS, f"`{acc.database}`.*"),
            ):
                cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password))
                # identifiers cannot be parameters; user names are validated by the lab
                cur.execute(f"GRANT {grants} ON {on} TO %s@'%%'", (user,))
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{acc.database}`")
            if acc.control_user:
                cur.execute("GRANT ALL ON `roleswap`.* TO %s@'%%'", (acc.control_user,))
                cur.execute("CREATE DATABASE IF NOT EXISTS `roleswap`")
            cur.execute("RESET MASTER")
    finally:
        conn.close()


def make_writable(spec: NodeSpec) -> None:
    """``SET GLOBAL read_only=0`` on the node (the primary, once bootstrapped).

    Its my.cnf keeps ``read_only=1``: only this run-time setting makes it writable,
    so a restart brings it back read-only.
    """
    conn = root_connect(spec)
    try:
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only=0")
    finally:
        conn.close()


def start_replication(spec: NodeSpec, source_host: str, source_port: int, acc: Accounts) -> None:
    conn = root_connect(spec)
    try:
        with conn.cursor() as cur:
            if spec.gtid:
                cur.execute(
                    "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
                    "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                    (source_host, source_port, acc.repl_user, acc.repl_password),
                )
            else:
                # file/position replication from the very first binlog of a fresh source
                cur.execute(
                    "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
                    "MASTER_PASSWORD=%s, MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=4, "
                    "MASTER_USE_GTID=no, MASTER_CONNECT_RETRY=1",
                    (source_host, source_port, acc.repl_user, acc.repl_password),
                )
            cur.execute("START SLAVE")
    finally:
        conn.close()
