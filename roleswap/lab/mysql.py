"""The lab's MySQL nodes (9.7 from Debian sid): template, my.cnf, accounts.

* Template: ``mysqld --initialize-insecure`` once per version (~2-3 s, root@localhost
  without a password, logged in over the socket), copied per node with ``auto.cnf``
  deleted, so each node makes itself a fresh server UUID (equal UUIDs stop
  replication with error 13117).
* my.cnf: GTID (``gtid_mode``/``enforce_gtid_consistency``) or, with ``gtid=False``,
  file/position; ``log_bin``, ROW, ``log_replica_updates``; X Plugin off; a lab-local
  ``secure_file_priv``; small buffer pool and redo log; and ``read_only`` AND
  ``super_read_only`` on EVERY node (the primary is made writable at run time).
* Accounts need ``super_read_only`` off (CREATE USER fails with 1290 under it, even
  with ``sql_log_bin=0``): :meth:`MySQLEngine.bootstrap` turns it off, creates them
  unlogged, resets binlogs and GTIDs, and turns it on again.  Every account uses
  caching_sha2_password (the only one 9.x has).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from roleswap.errors import LabError
from roleswap.lab import procs
from roleswap.lab.flavors import Server
from roleswap.lab.node import (
    Accounts,
    NodeSpec,
    build_template,
    copy_template,
    create_accounts,
    root_argv_tail,
    root_connect,
    template_dir,
)
from roleswap.lab.replication import node_dialect

# The control account WITHOUT SUPER: what roleswap's preflight requires on MySQL 8.0+
# (roleswap.mysql.grants.control_needs: SYSTEM_VARIABLES_ADMIN for (super_)read_only,
# SET PERSIST and RESET PERSIST; REPLICATION_SLAVE_ADMIN for replication control;
# RELOAD for RESET REPLICA; REPLICATION CLIENT for SHOW REPLICA / BINARY LOG STATUS;
# PROCESS; CONNECTION_ADMIN to kill sessions), plus SELECT (verification, performance_schema)
# and REPLICATION SLAVE (pt-table-checksum's replica discovery).
CONTROL_GRANTS = (
    "SELECT, RELOAD, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT, SYSTEM_VARIABLES_ADMIN, "
    "REPLICATION_SLAVE_ADMIN, CONNECTION_ADMIN"
)
REDO_LOG = "32M"  # innodb_redo_log_capacity: 120 MB template instead of 190 MB


class MySQLEngine:
    """MySQL nodes (see the module docstring)."""

    kind = "mysql"
    control_grants = CONTROL_GRANTS
    repl_grants = "REPLICATION SLAVE"

    def ensure_template(self, server: Server) -> Path:
        tpl = template_dir("mysql", server.version)
        if (tpl / "mysql.ibd").is_file():
            return tpl
        return build_template(tpl, lambda tmp: _initialize(server, tmp))

    def prepare(self, spec: NodeSpec, server: Server, template: Path) -> None:
        if copy_template(template, spec):
            (spec.datadir / "auto.cnf").unlink(missing_ok=True)  # a fresh server UUID per node
        (spec.dir / "files").mkdir(exist_ok=True)
        write_cnf(spec)

    def server_argv(self, server: Server, cnf: Path) -> list[str]:
        return [*server.argv(server.flavor.daemon), f"--defaults-file={cnf}", *root_argv_tail()]

    def bootstrap(self, spec: NodeSpec, acc: Accounts) -> None:
        conn = root_connect(spec)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin=0")
                cur.execute("SET GLOBAL super_read_only=0")  # read_only stays 1
                create_accounts(cur, acc, self.control_grants, self.repl_grants)
                for sql, args in node_dialect(cur).reset_binlogs():
                    cur.execute(sql, args)
                cur.execute("SET GLOBAL super_read_only=1")  # what my.cnf says
        finally:
            conn.close()

    def clear_stale(self, directory: Path) -> None:
        """mysqld refuses to start while ``mysqld.sock.lock`` names a PID that exists,
        and a SIGKILLed server can linger as a zombie until its parent reaps it: the
        lock is removed unless its PID is a running server of this node."""
        lock = directory / "mysqld.sock.lock"
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            return
        if not procs.alive(pid, str(directory / "my.cnf")):
            lock.unlink(missing_ok=True)


MYSQL = MySQLEngine()


def _initialize(server: Server, tmp: Path) -> None:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    files = tmp.with_name(tmp.name + ".files")
    files.mkdir(exist_ok=True)
    log = tmp.with_name(tmp.name + ".log")
    argv = [*server.argv(server.flavor.daemon), "--no-defaults", "--initialize-insecure",
            f"--datadir={tmp}", f"--innodb-redo-log-capacity={REDO_LOG}", f"--secure-file-priv={files}",
            f"--log-error={log}", *root_argv_tail()]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        if res.returncode != 0:
            try:
                tail = " | ".join(log.read_text().strip().splitlines()[-3:])
            except OSError:
                tail = res.stderr.strip()[-300:]
            raise LabError(f"mysqld --initialize-insecure ({server.flavor.name}) failed: {tail}",
                           remedy=f"remove {server.root} and fetch again: roleswap lab fetch "
                                  f"{server.flavor.name}")
    finally:
        files.rmdir()
        log.unlink(missing_ok=True)


def write_cnf(spec: NodeSpec) -> None:
    gtid = "ON" if spec.gtid else "OFF"
    lines = [
        "[mysqld]",
        f"datadir={spec.datadir}",
        f"socket={spec.socket}",
        f"pid-file={spec.pidfile}",
        f"port={spec.port}",
        f"bind-address={spec.bind}",
        "mysqlx=OFF",  # else the X Plugin listens on 33060 (one lab only, or a clash)
        f"secure_file_priv={spec.dir / 'files'}",  # the compiled default does not exist here
        f"server_id={spec.server_id}",
        f"log_error={spec.log}",
        "log_bin=mysql-bin",
        "relay_log=relay-bin",
        "binlog_format=ROW",
        "log_replica_updates=ON",
        f"gtid_mode={gtid}",
        f"enforce_gtid_consistency={gtid}",
        # MySQL's default: a multi-threaded applier, as production replicas run it
        "replica_parallel_workers=4",
        f"report_host={spec.bind.split(',')[0]}",
        f"report_port={spec.port}",
        "skip_name_resolve=ON",
        "innodb_buffer_pool_size=32M",
        f"innodb_redo_log_capacity={REDO_LOG}",
        "max_connections=200",
        # keep the lab honest about durability: acknowledged means on disk
        "sync_binlog=1",
        "innodb_flush_log_at_trx_commit=1",
        # EVERY node starts read-only, the primary too (see roleswap.lab.node)
        "read_only=1",
        "super_read_only=1",
        "",
        "[client]",
        f"socket={spec.socket}",
        f"port={spec.port}",
        "",
    ]
    spec.cnf.write_text("\n".join(lines))
