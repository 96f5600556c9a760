"""The lab's MariaDB nodes (the host's 10.11, or a fetched 11.8): template, my.cnf, accounts.

The template datadir is made once per MariaDB version and copied per node
(:mod:`roleswap.lab.node`).  The host's packages make it with ``mariadb-install-db``;
a fetched flavor cannot run that shell script (it would start the host's programs),
so its server is fed the same SQL files ``mariadb-install-db`` concatenates, from
the flavor's own ``share/mariadb``, with ``mariadbd --bootstrap`` (~0.5 s).  Either
way root@localhost has no password; the lab drops root's TCP accounts on each node.

A fetched server would take its basedir, plugin, message and charset directories
from the HOST's paths (compiled in), so my.cnf names the prefix's own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from roleswap.errors import LabError
from roleswap.lab.flavors import Server
from roleswap.lab.node import (
    APP_GRANTS,
    READY_TIMEOUT,
    Accounts,
    NodeSpec,
    build_template,
    copy_template,
    create_accounts,
    os_user,
    root_argv_tail,
    root_connect,
    root_connect_socket,
    template_dir,
)
from roleswap.lab.replication import node_dialect

__all__ = ["APP_GRANTS", "CONTROL_GRANTS", "MARIADB", "READY_TIMEOUT", "Accounts", "MariaDBEngine",
           "NodeSpec", "root_connect", "root_connect_socket"]

# What the control account needs on MariaDB 10.11+: READ ONLY ADMIN to set and bypass
# read_only, the replication admin privileges, and SELECT for checksums/verification.
CONTROL_GRANTS = (
    "SELECT, RELOAD, PROCESS, SUPER, REPLICATION SLAVE, BINLOG MONITOR, READ ONLY ADMIN, "
    "REPLICATION MASTER ADMIN, REPLICATION SLAVE ADMIN, SLAVE MONITOR, CONNECTION ADMIN, "
    "BINLOG ADMIN"
)

# mariadb-install-db's cat_sql(), in its order (share/mariadb of the flavor)
_BOOTSTRAP_SQL = ("mariadb_system_tables.sql", "mariadb_performance_tables.sql",
                  "mariadb_system_tables_data.sql", "fill_help_tables.sql",
                  "maria_add_gis_sp_bootstrap.sql", "mariadb_sys_schema.sql")


def _prefix_options(server: Server) -> list[str]:
    """Options pointing a fetched server at its own files ([] for the host's)."""
    if server.root is None:
        return []
    usr = server.usr
    return [f"basedir={usr}", f"plugin_dir={usr / 'lib/mysql/plugin'}",
            f"lc_messages_dir={usr / 'share/mariadb'}",
            f"character_sets_dir={usr / 'share/mariadb/charsets'}"]


class MariaDBEngine:
    """MariaDB nodes (see the module docstring)."""

    kind = "mariadb"
    control_grants = CONTROL_GRANTS
    repl_grants = "REPLICATION SLAVE, SLAVE MONITOR"

    def ensure_template(self, server: Server) -> Path:
        tpl = template_dir("mariadb", server.version)
        if (tpl / "mysql").is_dir():
            return tpl
        if server.root is None:
            return build_template(tpl, lambda tmp: _install_db(server, tmp))
        return build_template(tpl, lambda tmp: _bootstrap_datadir(server, tmp))

    def prepare(self, spec: NodeSpec, server: Server, template: Path) -> None:
        copy_template(template, spec)
        write_cnf(spec, server)

    def server_argv(self, server: Server, cnf: Path) -> list[str]:
        # --defaults-file must be the first argument or Debian's /etc/mysql config leaks in.
        return [*server.argv(server.flavor.daemon), f"--defaults-file={cnf}", *root_argv_tail()]

    def bootstrap(self, spec: NodeSpec, acc: Accounts) -> None:
        conn = root_connect(spec)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin=0")
                # install-db also creates passwordless root@127.0.0.1/::1/<hostname>: the
                # lab's root is socket-only
                cur.execute("SELECT User, Host FROM mysql.user WHERE User='root' AND Host<>'localhost'")
                for user, host in list(cur.fetchall()):
                    cur.execute("DROP USER %s@%s", (user, host))
                create_accounts(cur, acc, self.control_grants, self.repl_grants)
                for sql, args in node_dialect(cur).reset_binlogs():
                    cur.execute(sql, args)
        finally:
            conn.close()

    def clear_stale(self, directory: Path) -> None:
        pass  # mariadbd takes over a dead server's socket by itself


MARIADB = MariaDBEngine()


def _install_db(server: Server, tmp: Path) -> None:
    argv = [*server.argv("mariadb-install-db"), "--no-defaults", f"--datadir={tmp}",
            f"--user={os_user()}", "--auth-root-authentication-method=normal",
            "--skip-test-db", "--skip-name-resolve"]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise LabError(f"mariadb-install-db failed: {tail}", remedy="check the mariadb-server install")


def _bootstrap_datadir(server: Server, tmp: Path) -> None:
    """What ``mariadb-install-db --auth-root-authentication-method=normal --skip-test-db``
    does, with the fetched server and SQL files."""
    share = server.usr / "share/mariadb"
    parts = ["create database if not exists mysql;", "use mysql;", "SET @auth_root_socket=NULL;"]
    try:
        parts += [(share / f).read_text() for f in _BOOTSTRAP_SQL]
    except OSError as e:
        raise LabError(f"cannot read the bootstrap SQL of {server.flavor.name}: {e}",
                       remedy=f"remove {server.root} and fetch again: roleswap lab fetch "
                              f"{server.flavor.name}") from None
    tmp.mkdir(parents=True)
    argv = [*server.argv(server.flavor.daemon), "--no-defaults", "--bootstrap", f"--datadir={tmp}",
            *(f"--{o}" for o in _prefix_options(server)), "--log-warnings=0",
            "--enforce-storage-engine=", "--max_allowed_packet=8M", "--net_buffer_length=16K",
            "--skip-name-resolve", "--innodb-log-file-size=16M", *root_argv_tail()]
    res = subprocess.run(argv, input="\n".join(parts), capture_output=True, text=True, check=False,
                         timeout=120)
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise LabError(f"mariadbd --bootstrap ({server.flavor.name}) failed: {tail}",
                       remedy=f"remove {server.root} and fetch again: roleswap lab fetch "
                              f"{server.flavor.name}")
    (tmp / "mariadb_upgrade_info").write_text(server.version.split("+")[0].split("-")[0] + "-MariaDB")


def write_cnf(spec: NodeSpec, server: Server) -> None:
    lines = [
        "[mariadbd]",
        *_prefix_options(server),
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
    # writable at run time, as roleswap's promote step does.
    lines.append("read_only=1")
    lines += ["", "[client]", f"socket={spec.socket}", f"port={spec.port}", ""]
    spec.cnf.write_text("\n".join(lines))
