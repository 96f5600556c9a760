"""The replication topology as read from the servers right now.

Roles are never taken from the config: :func:`read_topology` connects to
every configured server in parallel, asks each who it is (version, server_id,
read_only, binlog, GTID state, replication status, long-running work) and
returns immutable snapshots.  A server that cannot be read becomes
``Server(reachable=False, error=...)``; reading never raises for one bad
server.  One read costs one connection and four queries.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pymysql

from roleswap.config import Config, ServerConfig
from roleswap.errors import RoleSwapError, ServerError
from roleswap.mysql.conn import connect, query, server_error
from roleswap.mysql.dialect import Dialect, ReplicaStatus, dialect_for
from roleswap.mysql.gtid import GtidSet, GtidValue, MariaGtidPos

__all__ = ["Activity", "ReplicaStatus", "Server", "Topology", "read_server", "read_topology"]

# Threads that are not client work: idle sessions, replication and daemons.
_ACTIVITY_SQL = (
    "(SELECT 'trx' AS kind, trx_mysql_thread_id AS id, NULL AS user, NULL AS command,"
    " TIMESTAMPDIFF(SECOND, trx_started, NOW()) AS age"
    " FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id <> CONNECTION_ID()"
    " ORDER BY trx_started LIMIT 1)"
    " UNION ALL "
    "(SELECT 'stmt', ID, USER, COMMAND, TIME FROM information_schema.PROCESSLIST"
    " WHERE ID <> CONNECTION_ID()"
    " AND COMMAND NOT IN ('Sleep', 'Daemon', 'Killed', 'Binlog Dump', 'Binlog Dump GTID',"
    " 'Slave_IO', 'Slave_SQL', 'Slave_worker')"
    " AND USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user')"
    " ORDER BY TIME DESC LIMIT 1)"
)


@dataclass(frozen=True)
class Activity:
    """The oldest open transaction or longest running statement on a server."""

    thread_id: int
    age_s: int
    user: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Server:
    """One configured server as read at ``Topology.read_at``.

    Everything but ``name``/``host``/``port`` is ``None`` when the server could
    not be read; ``error`` then says why, and ``error_kind`` how to word it:
    ``unreachable`` (no connection), ``access_denied`` (the control account's
    login was refused), ``lost`` or ``error`` (``error_code`` is the MySQL error
    number when there is one).  ``reachable`` is False whenever no session could
    be opened (access denied included).  ``super_read_only`` is ``None`` where the
    flavor has none (MariaDB).  ``gtid_position`` is what the server has logged, in its
    flavor's value type (``gtid_binlog_pos`` / ``gtid_executed``, see
    :attr:`Dialect.gtid_position_var`); the flavor's own GTID variables are filled
    where it has them, the others stay ``None``.
    """

    name: str
    host: str
    port: int
    reachable: bool
    error: str | None = None
    error_kind: str | None = None
    error_code: int | None = None
    flavor: str | None = None
    version: str | None = None
    dialect: Dialect | None = None
    server_id: int | None = None
    read_only: bool | None = None
    super_read_only: bool | None = None
    log_bin: bool | None = None
    log_replica_updates: bool | None = None
    gtid_mode: bool | None = None
    gtid_strict_mode: bool | None = None
    gtid_position: GtidValue | None = None
    gtid_binlog_pos: MariaGtidPos | None = None
    gtid_current_pos: MariaGtidPos | None = None
    gtid_slave_pos: MariaGtidPos | None = None
    gtid_binlog_state: MariaGtidPos | None = None
    gtid_executed: GtidSet | None = None
    binlog_file: str | None = None
    binlog_pos: int | None = None
    binlog_do_db: str | None = None  # SHOW MASTER/BINARY LOG STATUS filters ("" = none)
    binlog_ignore_db: str | None = None
    replica: ReplicaStatus | None = None
    channels: tuple[ReplicaStatus, ...] = ()
    max_connections: int | None = None
    longest_trx: Activity | None = None
    longest_statement: Activity | None = None
    hostname: str | None = None
    server_port: int | None = None
    report_host: str | None = None
    report_port: int | None = None
    # servers.<n>.replication_host/_port: the address replicas use (a container network)
    replication_address: tuple[str, int] | None = None
    notes: tuple[str, ...] = ()
    read_ms: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ok(self) -> bool:
        """Reachable and fully read."""
        return self.reachable and self.error is None

    @property
    def writable(self) -> bool:
        """True only when known to accept writes (an unread server is not)."""
        return self.ok and self.read_only is False and not self.super_read_only

    def endpoints(self) -> set[tuple[str, int]]:
        """(host, port) pairs under which replicas may know this server."""
        ports = {p for p in (self.port, self.server_port) if p}
        hosts = {h.lower() for h in (self.host, self.hostname, self.report_host) if h}
        out = {(h, p) for h in hosts for p in ports}
        if self.report_host:
            out.add((self.report_host.lower(), self.report_port or self.server_port or self.port))
        if self.replication_address:
            out.add((self.replication_address[0].lower(), self.replication_address[1]))
        return out


Resolver = Callable[[str], frozenset[str]]


def resolve_host(host: str) -> frozenset[str]:
    """IP addresses of ``host`` (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(info[4][0]) for info in infos)


def resolve_sources(
    servers: Sequence[Server], resolve: Resolver = resolve_host
) -> dict[str, str | None]:
    """For every server with a replication channel: the configured server it
    replicates from, or ``None`` when its source is not one of ``servers``.

    Matched by the source host:port against each server's config address,
    ``@@hostname`` and ``report_host``; then by resolved IP and port; then by
    the source's server_id as seen by the IO thread.
    """
    out: dict[str, str | None] = {}
    resolved: dict[str, frozenset[str]] = {}

    def ips(host: str) -> frozenset[str]:
        if host not in resolved:
            resolved[host] = resolve(host)
        return resolved[host]

    for s in servers:
        r = s.replica
        if r is None:
            continue
        others = [o for o in servers if o.name != s.name]
        want = (r.source_host.lower(), r.source_port)
        match = [o for o in others if want in o.endpoints()]
        if not match:
            src_ips = ips(r.source_host)
            match = [
                o for o in others
                if r.source_port in (o.port, o.server_port) and src_ips & ips(o.host)
            ]
        if not match and r.source_server_id:
            match = [o for o in others if o.server_id == r.source_server_id]
        out[s.name] = match[0].name if len(match) == 1 else None
    return out


@dataclass(frozen=True)
class Topology:
    """Every configured server, as read at ``read_at`` (``time.time()``)."""

    servers: tuple[Server, ...]
    sources: Mapping[str, str | None]
    read_at: float

    @classmethod
    def of(
        cls, servers: Iterable[Server], read_at: float | None = None,
        resolve: Resolver = resolve_host,
    ) -> Topology:
        ss = tuple(servers)
        return cls(
            servers=ss,
            sources=MappingProxyType(resolve_sources(ss, resolve)),
            read_at=time.time() if read_at is None else read_at,
        )

    def by_name(self, name: str) -> Server:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def writable(self) -> list[Server]:
        return [s for s in self.servers if s.writable]

    def unreachable(self) -> list[Server]:
        return [s for s in self.servers if not s.ok]

    def source_of(self, name: str) -> str | None:
        return self.sources.get(name)

    def replicas_of(self, name: str) -> list[Server]:
        return [s for s in self.servers if self.sources.get(s.name) == name]


# -- reading ----------------------------------------------------------------------


def _bool(v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(int(v))


def _int(v: Any) -> int | None:
    return None if v is None or v == "" else int(v)


def _str(v: Any) -> str | None:
    if isinstance(v, bytes):
        return v.decode()
    return None if v is None else str(v)


# Server fields read from the dialect's ``variables`` under the same alias, where present.
_GTID_VARIABLES: dict[str, Callable[[str | None], Any]] = {
    "gtid_strict_mode": lambda t: _bool(t),
    "gtid_binlog_pos": MariaGtidPos.parse,
    "gtid_current_pos": MariaGtidPos.parse,
    "gtid_slave_pos": MariaGtidPos.parse,
    "gtid_binlog_state": lambda t: MariaGtidPos.parse(t, state=True),
    "gtid_executed": GtidSet.parse,
}


def _server_from_rows(
    d: Dialect, v: Mapping[str, Any],
    replica_rows: Sequence[Mapping[str, Any]], binlog_rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Server fields from the raw query results (pure; unit-tested)."""
    channels = tuple(ReplicaStatus.from_row(r) for r in replica_rows)
    default = [c for c in channels if c.channel == ""]
    replica = default[0] if default else (channels[0] if channels else None)
    f: dict[str, Any] = {
        "flavor": d.flavor,
        "version": _str(v.get("version")),
        "dialect": d,
        "server_id": _int(v.get("server_id")),
        "read_only": _bool(v.get("read_only")),
        "super_read_only": _bool(v.get("super_read_only")),
        "log_bin": _bool(v.get("log_bin")),
        "log_replica_updates": _bool(v.get("log_replica_updates")),
        "max_connections": _int(v.get("max_connections")),
        "hostname": _str(v.get("hostname")),
        "server_port": _int(v.get("port")),
        "report_host": _str(v.get("report_host")) or None,
        "report_port": _int(v.get("report_port")) or None,
        "replica": replica,
        "channels": channels,
    }
    for alias, parse in _GTID_VARIABLES.items():  # those the flavor has (its dialect reads)
        if alias in v:
            f[alias] = parse(_str(v[alias]))
    position = d.parse_gtid(_str(v.get(d.gtid_position_var)))
    f["gtid_position"] = position
    mode = _str(v.get("gtid_mode"))
    # MariaDB has no gtid_mode (GTIDs are always logged): GTID mode when it has logged
    # some, or replicates by GTID.
    f["gtid_mode"] = (mode.upper() == "ON" if mode is not None
                      else bool(position) or bool(replica and replica.gtid_mode))
    if binlog_rows:
        f["binlog_file"] = _str(binlog_rows[0].get("File"))
        f["binlog_pos"] = _int(binlog_rows[0].get("Position"))
        f["binlog_do_db"] = _str(binlog_rows[0].get("Binlog_Do_DB")) or ""
        f["binlog_ignore_db"] = _str(binlog_rows[0].get("Binlog_Ignore_DB")) or ""
    return f


def _activity(rows: Sequence[Mapping[str, Any]]) -> dict[str, Activity | None]:
    out: dict[str, Activity | None] = {"longest_trx": None, "longest_statement": None}
    for r in rows:
        if r.get("id") is None or r.get("age") is None:
            continue
        a = Activity(int(r["id"]), int(r["age"]), _str(r.get("user")), _str(r.get("command")))
        out["longest_trx" if _str(r.get("kind")) == "trx" else "longest_statement"] = a
    return out


def read_server(cfg: ServerConfig, config: Config, *, timeout: float | None = None) -> Server:
    """Read one server; failures are returned in ``Server.error``, never raised."""
    t0 = time.perf_counter()
    repl_addr = None
    if "replication_host" in cfg.extra or "replication_port" in cfg.extra:
        repl_addr = (str(cfg.extra.get("replication_host", cfg.host)),
                     int(cfg.extra.get("replication_port", cfg.port)))

    def done(reachable: bool, error: RoleSwapError | None = None, **fields: Any) -> Server:
        kind = code = None
        if error is not None:
            kind, code = (error.kind, error.code) if isinstance(error, ServerError) else ("error", None)
        return Server(name=cfg.name, host=cfg.host, port=cfg.port, reachable=reachable,
                      error=None if error is None else str(error), error_kind=kind, error_code=code,
                      read_ms=(time.perf_counter() - t0) * 1000, replication_address=repl_addr, **fields)

    tmo = timeout if timeout is not None else config.connect_timeout
    try:
        conn = connect(cfg, config.mysql, timeout=tmo, tls=config.tls)
    except RoleSwapError as e:
        return done(False, e)
    try:
        step = "detect version"
        try:
            d = dialect_for(conn.get_server_info() or "")
            step = "read variables"
            v = query(conn, *d.variables_query())[0]
            d = dialect_for(_str(v.get("version")) or "")  # the handshake may be vague
            step = "read replication status"
            replica_rows = query(conn, *d.replica_status())
            step = "read binlog status"
            binlog_rows = query(conn, *d.binlog_status())
            fields = _server_from_rows(d, v, replica_rows, binlog_rows)
        except RoleSwapError as e:
            return done(True, e)
        except (pymysql.MySQLError, OSError, ValueError) as e:
            return done(True, server_error(cfg, e, doing=step))
        notes: list[str] = []
        try:
            fields.update(_activity(query(conn, _ACTIVITY_SQL)))
        except pymysql.MySQLError as e:
            # Needs PROCESS; the swap can run without it, preflight says so.
            notes.append(f"long-running work unknown: {server_error(cfg, e, doing='read activity')}")
        return done(True, None, notes=tuple(notes), **fields)
    finally:
        conn.close()


def read_topology(config: Config, *, timeout: float | None = None) -> Topology:
    """Read every configured server now, in parallel, in config order."""
    cfgs = list(config.servers.values())
    with ThreadPoolExecutor(max_workers=max(1, len(cfgs)), thread_name_prefix="topology") as ex:
        servers = list(ex.map(lambda c: read_server(c, config, timeout=timeout), cfgs))
    return Topology.of(servers)
