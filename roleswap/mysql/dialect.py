"""One SQL dialect per server flavor, as data.

A :class:`Dialect` is a frozen bundle of statement templates plus capability
flags; its methods only fill templates, so the difference between MariaDB,
MySQL 5.7, 8.0 and 8.4 lives in the four constants below, not in if/else
branches spread over the code.  Every method returns ``(sql, params)``
("Stmt") to be run as ``cursor.execute(sql, params)``: host names, users,
passwords, binlog file names and GTID strings are ALWAYS parameters, never
part of the SQL text; numbers are passed as ``int``/``float``.

Live-tested (every integration, fault and e2e suite): MariaDB 10.11 and 11.8
(``MARIADB``) and MySQL 9.7, whose syntax is 8.4's (``MYSQL84``).  MySQL 5.7 and
8.0 (``MYSQL57``, ``MYSQL80``) are written against the documented syntax and
unit-tested on exact statements only.

Besides the statements a swap runs, the GTID variables are named here by meaning
(``gtid_position_var``, ``gtid_applied_var``, ``gtid_state_var``), and so are the
lab/test repairs and the remedy spellings, so no other module needs to know
which flavor it talks to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from roleswap.errors import ServerError
from roleswap.mysql.gtid import GtidSet, GtidValue, MariaGtidPos
from roleswap.mysql.replica_status import ReplicaStatus  # re-exported: existing imports

Stmt = tuple[str, tuple[Any, ...]]

MARIADB_FLAVOR = "mariadb"
MYSQL_FLAVOR = "mysql"


class UnsupportedServerError(ServerError):
    """The server's flavor or version has no dialect (too old or unrecognised)."""


@dataclass(frozen=True)
class Dialect:
    """Statement templates and capabilities of one server flavor/version."""

    name: str  # "mariadb", "mysql57", "mysql80", "mysql84"
    flavor: str  # MARIADB_FLAVOR or MYSQL_FLAVOR
    version: tuple[int, int, int]
    has_super_read_only: bool
    can_demote_to_replica: bool  # MariaDB 10.10+: MASTER_DEMOTE_TO_SLAVE=1
    replica_status_sql: str  # returns every channel / connection
    binlog_status_sql: str
    start_replica_sql: str
    stop_replica_sql: str
    reset_replica_all_sql: str
    change_source_sql: str  # "CHANGE MASTER TO" / "CHANGE REPLICATION SOURCE TO"
    kw: str  # option prefix: "MASTER" / "SOURCE"
    gtid_auto_position: str  # how to replicate by GTID
    no_auto_position: str  # how to replicate by file/pos
    extra_source_options: tuple[str, ...]  # appended to every CHANGE ... TO
    gtid_wait_sql: str  # returns 0 when reached
    pos_wait_sql: str  # returns >= 0 reached, -1 timeout, NULL not replicating
    variables: tuple[tuple[str, str], ...]  # (alias, expression) read by the topology
    # Global privileges that let a session write through this dialect's fence (read_only
    # on MariaDB; nothing gets through super_read_only on MySQL but replication appliers).
    # Spelled with spaces; SHOW GRANTS / USER_PRIVILEGES may use '_' (see sessions.py).
    fence_bypass_privileges: tuple[str, ...] = ()
    # MySQL 8.0+: SET PERSIST writes mysqld-auto.cnf, which overrides my.cnf at restart.
    # Fencing persists read-only (a fenced or demoted server restarts read-only whatever
    # my.cnf says); unfencing REMOVES the persisted value rather than persisting "off",
    # so a restarted primary falls back to my.cnf, where read_only=ON belongs.
    persist_read_only: bool = False
    # rows (name, rule) of the replication filters a server would apply to ANY channel it
    # gets later -- a primary has no channel, so SHOW SLAVE STATUS cannot show them
    global_filters_sql: str = ""
    # GTID variables by meaning (read with gtid_position() / gtid_applied() / gtid_state();
    # each name is also its alias in ``variables``): what the server has LOGGED, the
    # position its replicas must reach ...
    gtid_position_var: str = "gtid_executed"
    # ... everything it has APPLIED, logged or not (equal on caught-up servers) ...
    gtid_applied_var: str = "gtid_executed"
    # ... and the history per origin that tells its own transactions from replicated ones
    # (MariaDB: one GTID per (domain, server_id); compared by gtid.extra_gtids).
    gtid_state_var: str = "gtid_executed"
    # Lab/test repair only, never in a swap: forget every binary log and GTID of the server,
    # then declare a position already applied (%s: the position).
    reset_binlogs_sql: str = "RESET MASTER"
    adopt_gtid_sql: str = "SET GLOBAL gtid_purged=%s"
    # How this server's OWN transactions' GTIDs begin (column ``g``): "domain-server_id-"
    # on MariaDB, "server_uuid:" on MySQL (tests recognise a server's own writes by it).
    own_gtid_prefix_sql: str = "SELECT CONCAT(@@GLOBAL.server_uuid, ':') AS g"
    # Remedy text: how a replicate_* filter is cleared at runtime ({setting}: its name as
    # ReplicaStatus.filter_settings spells it for this flavor).
    clear_filter_variable: str = "CHANGE REPLICATION FILTER {setting}=()"
    # Lab/tests: set a replicate_*_table filter ({tables}: quoted names; %s: one parameter).
    set_filter_variable: str = "CHANGE REPLICATION FILTER {setting}=({tables})"
    # SHOW GRANTS includes the grants of the session's active roles (MariaDB), or never
    # expands roles (MySQL: privileges through roles cannot be checked from it).
    show_grants_expands_roles: bool = False
    # Forgetting a source stops the IO thread, then the SQL thread, instead of one STOP: MariaDB's
    # STOP SLAVE kills the SQL thread first, and when THD::awake cannot take the lock the
    # idle SQL thread waits on, it sleeps 50 ms before trying again (WAIT_FOR_KILL_TRY_TIMES).
    # Measured when promotion ran it inside the pause window, 10.11, back-to-back swaps: one
    # STOP SLAVE took 52-57 ms in 14 of 100, IO then SQL in 0 of 99 (11.8: 1 of 59 vs 0 of 59).
    # MySQL locks instead of sleeping (no 50 ms step seen): one statement, one round trip.
    # (Promotion now stops the SQL thread alone -- stop_applier -- and this IO-then-SQL stop
    # runs in detach, after the resume.  The SQL-thread-only stop showed the 50 ms step in
    # 1 of 600 idle promotions, for 0.4-0.9 ms less promote p50 than IO then SQL.)
    stop_io_thread_first: bool = False

    # -- reading ---------------------------------------------------------------
    def variables_query(self) -> Stmt:
        """One SELECT returning every server variable the topology needs."""
        cols = ", ".join(f"{expr} AS {alias}" for alias, expr in self.variables)
        return f"SELECT {cols}", ()

    def replica_status(self) -> Stmt:
        return self.replica_status_sql, ()

    def binlog_status(self) -> Stmt:
        return self.binlog_status_sql, ()

    def gtid_position(self) -> Stmt:
        """``SELECT`` (column ``g``) what the server has logged: the position replicas wait for."""
        return f"SELECT @@GLOBAL.{self.gtid_position_var} AS g", ()

    def gtid_applied(self) -> Stmt:
        """``SELECT`` (column ``g``) every GTID the server has applied."""
        return f"SELECT @@GLOBAL.{self.gtid_applied_var} AS g", ()

    def gtid_state(self) -> Stmt:
        """``SELECT`` (column ``g``) the GTID history compared by :func:`extra_gtids`."""
        return f"SELECT @@GLOBAL.{self.gtid_state_var} AS g", ()

    def parse_gtid(self, text: str | None) -> GtidValue:
        """A GTID position of this flavor as its value type (``str()`` is canonical:
        MySQL's ``",\\n"`` between UUID sets is gone)."""
        if self.flavor == MARIADB_FLAVOR:
            return MariaGtidPos.parse(text)
        return GtidSet.parse(text)

    def parse_gtid_state(self, text: str | None) -> GtidValue:
        """What :meth:`gtid_state` returned, as its value type (a MariaDB binlog state
        may hold several GTIDs per domain)."""
        if self.flavor == MARIADB_FLAVOR:
            return MariaGtidPos.parse(text, state=True)
        return GtidSet.parse(text)

    # -- lab / test repair -----------------------------------------------------------
    def reset_binlogs(self) -> list[Stmt]:
        """Forget every binary log and GTID of this server (lab and tests only)."""
        return [(self.reset_binlogs_sql, ())]

    def adopt_gtid_position(self, position: GtidValue | str) -> list[Stmt]:
        """After :meth:`reset_binlogs` (replication stopped): declare ``position`` applied,
        so GTID replication resumes after it."""
        return [(self.adopt_gtid_sql, (str(position),))]

    def set_filter(self, setting: str, tables: tuple[str, ...]) -> Stmt:
        """Lab/tests: make ``setting`` (a ``replicate_*_table`` filter, named as
        ``filter_setting`` spells it for this flavor) filter ``db.table`` ``tables``."""
        for t in tables:
            if not _TABLE_NAME.match(t):
                raise ValueError(f"not a db.table name: {t!r}")
        if "%s" in self.set_filter_variable:
            return self.set_filter_variable.format(setting=setting), (",".join(tables),)
        quoted = ", ".join(".".join(f"`{part}`" for part in t.split(".")) for t in tables)
        return self.set_filter_variable.format(setting=setting, tables=quoted), ()

    def own_gtid_prefix(self) -> Stmt:
        """``SELECT`` (column ``g``) how the GTIDs of this server's own writes begin."""
        return self.own_gtid_prefix_sql, ()

    def clear_filter_hint(self, setting: str) -> str:
        """Remedy text clearing the filter ``setting``: a ``replicate_*`` filter (MariaDB
        variable, MySQL CHANGE REPLICATION FILTER), or a CHANGE MASTER/REPLICATION SOURCE
        option (IGNORE_SERVER_IDS, MariaDB's DO/IGNORE_DOMAIN_IDS)."""
        if setting.lower().startswith("replicate_"):
            return self.clear_filter_variable.format(setting=setting)
        return f"{self.change_source_sql} {setting}=()"

    # -- fencing -----------------------------------------------------------------
    def fence(self, lock_wait_timeout: int) -> list[Stmt]:
        """Make the server refuse writes, giving up after ``lock_wait_timeout`` s.

        ``SET GLOBAL read_only=1`` waits for running statements and LOCK TABLES
        holders; with a bounded session lock_wait_timeout it fails with 1205
        and leaves the server writable, a safe abort.  On MySQL
        ``super_read_only=1`` implies ``read_only=1`` and also stops SUPER users.
        One statement, one round trip inside the pause window: a SET's assignments
        apply in order, so the bound holds for the read-only one (tested live:
        tests/integration/test_preflight.py, LOCK TABLES held -> 1205 after the bound).
        """
        if not isinstance(lock_wait_timeout, int) or lock_wait_timeout < 1:
            raise ValueError("lock_wait_timeout must be an int >= 1 (seconds)")
        ((read_only, _),) = self.read_only()
        assignment = read_only.removeprefix("SET ")
        return [(f"SET SESSION lock_wait_timeout=%s, {assignment}", (lock_wait_timeout,))]

    def unfence(self) -> list[Stmt]:
        """Make the server writable again; where read-only was persisted, drop that so
        my.cnf rules the next start (:meth:`forget_persisted_read_only`, then
        :meth:`writable`)."""
        return [*self.forget_persisted_read_only(), *self.writable()]

    def writable(self) -> list[Stmt]:
        """Writable now (super_read_only first: it is the outer lock), leaving any
        persisted read-only in place: restarted before :meth:`forget_persisted_read_only`,
        the server comes back read-only -- the safe side."""
        stmts: list[Stmt] = []
        if self.has_super_read_only:
            stmts.append(("SET GLOBAL super_read_only=0", ()))
        stmts.append(("SET GLOBAL read_only=0", ()))
        return stmts

    def forget_persisted_read_only(self) -> list[Stmt]:
        """Drop a read-only persisted by an earlier fence or demotion (MySQL 8.0+ writes
        mysqld-auto.cnf: a file write and fsync, ~1 ms), so my.cnf rules the next start."""
        if not self.persist_read_only:
            return []
        return [("RESET PERSIST IF EXISTS super_read_only", ()),
                ("RESET PERSIST IF EXISTS read_only", ())]

    @property
    def fence_var(self) -> str:
        """The variable the fence sets: ``super_read_only`` where the flavor has it (it
        stops every account), else ``read_only``."""
        return "super_read_only" if self.has_super_read_only else "read_only"

    def read_only(self) -> list[Stmt]:
        """Set read-only without a lock bound (for replicas, which run no client writes);
        persisted where the server can (it then survives a restart)."""
        scope = "PERSIST" if self.persist_read_only else "GLOBAL"
        return [(f"SET {scope} {self.fence_var}=1", ())]

    # -- replication control -------------------------------------------------------
    def start_replication(self) -> list[Stmt]:
        return [(self.start_replica_sql, ())]

    def stop_replication(self) -> list[Stmt]:
        return [(self.stop_replica_sql, ())]

    def stop_applier(self) -> list[Stmt]:
        """Stop the SQL (applier) thread only: nothing more from the source is applied,
        while the IO thread may go on copying events into the relay log (promotion; the
        channel is reset after the resume).  The statement returns once the applier has
        stopped; on a server that replicates from nothing it is a no-op (a note)."""
        return [(f"{self.stop_replica_sql} SQL_THREAD", ())]

    def reset_replication(self) -> list[Stmt]:
        """Stop replication and forget the source entirely (after a promotion)."""
        stops: list[Stmt] = [(self.stop_replica_sql, ())]
        if self.stop_io_thread_first:
            stops = [(f"{self.stop_replica_sql} IO_THREAD", ()), (f"{self.stop_replica_sql} SQL_THREAD", ())]
        return [*stops, (self.reset_replica_all_sql, ())]

    def _change(
        self, host: str, port: int, user: str, password: str, connect_retry: int,
        tail: tuple[str, ...], tail_params: tuple[Any, ...] = (),
    ) -> Stmt:
        if not isinstance(port, int) or not isinstance(connect_retry, int):
            raise ValueError("port and connect_retry must be ints")
        k = self.kw
        opts = [
            f"{k}_HOST=%s", f"{k}_PORT=%s", f"{k}_USER=%s", f"{k}_PASSWORD=%s",
            f"{k}_CONNECT_RETRY=%s", *tail, *self.extra_source_options,
        ]
        return (
            f"{self.change_source_sql} {', '.join(opts)}",
            (host, port, user, password, connect_retry, *tail_params),
        )

    def point_to_source_gtid(
        self, host: str, port: int, user: str, password: str, *, connect_retry: int = 1
    ) -> list[Stmt]:
        """Replicate from ``host:port`` by GTID (replication must be stopped)."""
        return [self._change(host, port, user, password, connect_retry, (self.gtid_auto_position,))]

    def point_to_source_pos(
        self, host: str, port: int, user: str, password: str, log_file: str, log_pos: int,
        *, connect_retry: int = 1,
    ) -> list[Stmt]:
        """Replicate from ``host:port`` starting at binlog coordinates ``log_file:log_pos``."""
        if not isinstance(log_pos, int):
            raise ValueError("log_pos must be an int")
        k = self.kw
        tail = (f"{k}_LOG_FILE=%s", f"{k}_LOG_POS=%s", self.no_auto_position)
        return [self._change(host, port, user, password, connect_retry, tail, (log_file, log_pos))]

    def demote_to_replica(
        self, host: str, port: int, user: str, password: str, *, connect_retry: int = 1
    ) -> list[Stmt]:
        """Turn a fenced ex-primary into a GTID replica of ``host:port`` (not started).

        MariaDB 10.10+: ``MASTER_DEMOTE_TO_SLAVE=1`` merges the ex-primary's own
        binlog GTIDs into gtid_slave_pos so it does not re-request them.
        MariaDB 10.6-10.9 has no such option; we copy ``gtid_current_pos``
        into ``gtid_slave_pos`` first.  Caveat: that is only right when the
        ex-primary logged everything it applied (``log_slave_updates=ON``)
        and holds nothing the new primary lacks (guaranteed by the fence and
        catch-up wait of the swap); otherwise strict mode stops replication
        with an out-of-order error, which verify reports.
        MySQL: GTID auto-positioning already accounts for gtid_executed.
        """
        if self.flavor != MARIADB_FLAVOR:
            return self.point_to_source_gtid(host, port, user, password, connect_retry=connect_retry)
        if self.can_demote_to_replica:
            tail = (self.gtid_auto_position, "MASTER_DEMOTE_TO_SLAVE=1")
            return [self._change(host, port, user, password, connect_retry, tail)]
        return [
            ("SET GLOBAL gtid_slave_pos=@@GLOBAL.gtid_current_pos", ()),
            self._change(host, port, user, password, connect_retry, (self.gtid_auto_position,)),
        ]

    # -- waiting -------------------------------------------------------------------
    def wait_for_gtid(self, position: GtidValue | str, timeout: float) -> Stmt:
        """Block until the SQL thread has applied ``position`` (see :func:`gtid_wait_reached`)."""
        return self.gtid_wait_sql, (str(position), _timeout(timeout))

    def wait_for_pos(self, log_file: str, log_pos: int, timeout: float) -> Stmt:
        """Block until the SQL thread has applied the source's ``log_file:log_pos``."""
        if not isinstance(log_pos, int):
            raise ValueError("log_pos must be an int")
        return self.pos_wait_sql, (log_file, log_pos, _timeout(timeout))


_TABLE_NAME = re.compile(r"^\w+\.\w+$")


def _timeout(timeout: float) -> float:
    if not isinstance(timeout, int | float) or timeout < 0:
        raise ValueError("timeout must be a number >= 0 (seconds)")
    return float(timeout)


def gtid_wait_reached(value: Any) -> bool:
    """Result of a GTID wait: 0 = reached; -1 (MariaDB) / 1 (MySQL) = timed out."""
    return value is not None and int(value) == 0


def pos_wait_reached(value: Any) -> bool | None:
    """Result of MASTER_POS_WAIT/SOURCE_POS_WAIT: True reached, False timed out,
    None when the server is not replicating (SQL thread stopped or no source)."""
    if value is None:
        return None
    return int(value) >= 0


_COMMON_VARS: tuple[tuple[str, str], ...] = (
    ("version", "@@GLOBAL.version"),
    ("server_id", "@@GLOBAL.server_id"),
    ("read_only", "@@GLOBAL.read_only"),
    ("log_bin", "@@GLOBAL.log_bin"),
    ("max_connections", "@@GLOBAL.max_connections"),
    ("hostname", "@@GLOBAL.hostname"),
    ("port", "@@GLOBAL.port"),
    ("report_host", "@@GLOBAL.report_host"),
    ("report_port", "@@GLOBAL.report_port"),
)

MARIADB = Dialect(
    name="mariadb",
    flavor=MARIADB_FLAVOR,
    version=(10, 11, 0),
    has_super_read_only=False,
    can_demote_to_replica=True,
    replica_status_sql="SHOW ALL SLAVES STATUS",
    binlog_status_sql="SHOW MASTER STATUS",
    start_replica_sql="START SLAVE",
    stop_replica_sql="STOP SLAVE",
    reset_replica_all_sql="RESET SLAVE ALL",
    change_source_sql="CHANGE MASTER TO",
    kw="MASTER",
    gtid_auto_position="MASTER_USE_GTID=slave_pos",
    no_auto_position="MASTER_USE_GTID=no",
    extra_source_options=(),
    gtid_wait_sql="SELECT MASTER_GTID_WAIT(%s, %s)",
    pos_wait_sql="SELECT MASTER_POS_WAIT(%s, %s, %s)",
    fence_bypass_privileges=("READ ONLY ADMIN",),
    gtid_position_var="gtid_binlog_pos",
    gtid_applied_var="gtid_current_pos",
    gtid_state_var="gtid_binlog_state",
    adopt_gtid_sql="SET GLOBAL gtid_slave_pos=%s",
    own_gtid_prefix_sql="SELECT CONCAT(@@GLOBAL.gtid_domain_id, '-', @@GLOBAL.server_id, '-') AS g",
    clear_filter_variable="SET GLOBAL {setting}=''",
    set_filter_variable="SET GLOBAL {setting}=%s",
    show_grants_expands_roles=True,
    stop_io_thread_first=True,
    global_filters_sql=" UNION ALL ".join(
        f"SELECT '{v}' AS name, @@GLOBAL.{v} AS rule" for v in (
            "replicate_do_db", "replicate_ignore_db", "replicate_do_table",
            "replicate_ignore_table", "replicate_wild_do_table", "replicate_wild_ignore_table")),
    variables=(
        *_COMMON_VARS,
        ("super_read_only", "NULL"),
        ("log_replica_updates", "@@GLOBAL.log_slave_updates"),
        ("gtid_strict_mode", "@@GLOBAL.gtid_strict_mode"),
        ("gtid_binlog_pos", "@@GLOBAL.gtid_binlog_pos"),
        ("gtid_current_pos", "@@GLOBAL.gtid_current_pos"),
        ("gtid_slave_pos", "@@GLOBAL.gtid_slave_pos"),
        ("gtid_binlog_state", "@@GLOBAL.gtid_binlog_state"),
    ),
)

_MYSQL_VARS: tuple[tuple[str, str], ...] = (
    *_COMMON_VARS,
    ("super_read_only", "@@GLOBAL.super_read_only"),
    ("gtid_mode", "@@GLOBAL.gtid_mode"),
    ("gtid_executed", "@@GLOBAL.gtid_executed"),
)

MYSQL57 = Dialect(
    name="mysql57",
    flavor=MYSQL_FLAVOR,
    version=(5, 7, 0),
    has_super_read_only=True,
    can_demote_to_replica=False,
    replica_status_sql="SHOW SLAVE STATUS",
    binlog_status_sql="SHOW MASTER STATUS",
    start_replica_sql="START SLAVE",
    stop_replica_sql="STOP SLAVE",
    reset_replica_all_sql="RESET SLAVE ALL",
    change_source_sql="CHANGE MASTER TO",
    kw="MASTER",
    gtid_auto_position="MASTER_AUTO_POSITION=1",
    no_auto_position="MASTER_AUTO_POSITION=0",
    extra_source_options=(),
    gtid_wait_sql="SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)",
    pos_wait_sql="SELECT MASTER_POS_WAIT(%s, %s, %s)",
    variables=(*_MYSQL_VARS, ("log_replica_updates", "@@GLOBAL.log_slave_updates")),
)

# 8.0.26+ renamed the statements and options; only what differs from 5.7 is listed.
MYSQL80 = replace(
    MYSQL57,
    name="mysql80",
    version=(8, 0, 26),
    replica_status_sql="SHOW REPLICA STATUS",
    start_replica_sql="START REPLICA",
    stop_replica_sql="STOP REPLICA",
    reset_replica_all_sql="RESET REPLICA ALL",
    change_source_sql="CHANGE REPLICATION SOURCE TO",
    kw="SOURCE",
    gtid_auto_position="SOURCE_AUTO_POSITION=1",
    no_auto_position="SOURCE_AUTO_POSITION=0",
    # caching_sha2_password (the 8.0 default) over a non-TLS replication link
    # fails without the source's RSA key; harmless when TLS is used.
    extra_source_options=("GET_SOURCE_PUBLIC_KEY=1",),
    persist_read_only=True,
    global_filters_sql="SELECT FILTER_NAME AS name, FILTER_RULE AS rule "
                       "FROM performance_schema.replication_applier_global_filters",
    pos_wait_sql="SELECT SOURCE_POS_WAIT(%s, %s, %s)",
    variables=(*_MYSQL_VARS, ("log_replica_updates", "@@GLOBAL.log_replica_updates")),
)

# 8.4 removed SHOW MASTER STATUS, RESET MASTER and the other MASTER/SLAVE statements.
MYSQL84 = replace(MYSQL80, name="mysql84", version=(8, 4, 0), binlog_status_sql="SHOW BINARY LOG STATUS",
                  reset_binlogs_sql="RESET BINARY LOGS AND GTIDS")

_VERSION_RE = re.compile(r"^(?:5\.5\.5-)?(\d+)\.(\d+)\.(\d+)")


def parse_version(version: str) -> tuple[str, tuple[int, int, int]]:
    """``('mariadb'|'mysql', (major, minor, patch))`` from ``SELECT VERSION()``
    or the handshake (MariaDB < 11 prefixes the latter with ``5.5.5-``)."""
    m = _VERSION_RE.match(version.strip())
    if not m:
        raise UnsupportedServerError(
            f"cannot parse server version {version!r}",
            remedy="roleswap supports MariaDB 10.6+ and MySQL 5.7/8.0/8.4",
        )
    flavor = MARIADB_FLAVOR if "mariadb" in version.lower() else MYSQL_FLAVOR
    major, minor, patch = (int(x) for x in m.groups())
    return flavor, (major, minor, patch)


def dialect_for(version: str) -> Dialect:
    """The dialect for a server version string such as ``10.11.19-MariaDB-log``
    or ``8.0.36``; raises :class:`UnsupportedServerError` for old servers."""
    flavor, v = parse_version(version)
    if flavor == MARIADB_FLAVOR:
        if v < (10, 6, 0):
            raise UnsupportedServerError(
                f"MariaDB {'.'.join(map(str, v))} is not supported",
                remedy="upgrade to MariaDB 10.6 or later (10.10+ for MASTER_DEMOTE_TO_SLAVE)",
            )
        # Before 10.11 SUPER included READ ONLY ADMIN, so SUPER sessions write through read_only.
        bypass = ("READ ONLY ADMIN",) if v >= (10, 11, 0) else ("READ ONLY ADMIN", "SUPER")
        return replace(MARIADB, version=v, can_demote_to_replica=v >= (10, 10, 0),
                       fence_bypass_privileges=bypass)
    if v < (5, 7, 0):
        raise UnsupportedServerError(
            f"MySQL {'.'.join(map(str, v))} is not supported",
            remedy="upgrade to MySQL 5.7 or later (8.0/8.4 recommended)",
        )
    if v < (8, 0, 0):
        return replace(MYSQL57, version=v)
    if v < (8, 0, 23):
        # REPLICA/SOURCE syntax is complete only from 8.0.23: keep the 5.7 words.
        return replace(
            MYSQL57, name="mysql80", version=v, extra_source_options=("GET_MASTER_PUBLIC_KEY=1",),
            persist_read_only=True,
        )
    if v < (8, 0, 26):
        # SOURCE_POS_WAIT and log_replica_updates arrived in 8.0.26.
        return replace(
            MYSQL80, version=v, pos_wait_sql="SELECT MASTER_POS_WAIT(%s, %s, %s)",
            variables=(*_MYSQL_VARS, ("log_replica_updates", "@@GLOBAL.log_slave_updates")),
        )
    if v < (8, 4, 0):
        return replace(MYSQL80, version=v)
    return replace(MYSQL84, version=v)


__all__ = ["MARIADB", "MYSQL57", "MYSQL80", "MYSQL84", "Dialect", "ReplicaStatus", "Stmt",
           "UnsupportedServerError", "dialect_for", "gtid_wait_reached", "parse_version",
           "pos_wait_reached"]
