"""Database access for the demo app: where the primary is, a small pool, honest writes.

* At start-up the primary is the endpoint roleswap published in Redis
  (:func:`roleswap.coord.endpoint.current_primary`); if none was ever published, it is
  the one configured server that answers ``@@read_only = 0``.
* With ``switch.method = "vip"`` the app always connects to the VIP (``[switch] vip``,
  port ``vip_port`` or the primary's): the network says where the primary is.  With
  ``switch.method = "haproxy"`` it always connects to the first ``[[switch.haproxy]]``
  instance's ``frontend``: HAProxy's writes backend says where the primary is.  Each new
  connection through such a fixed address asks ``@@server_id`` so responses name the
  server that really served them.
* :meth:`Database.on_resume` (the intermission ``on_resume`` hook) switches to
  ``payload["primary"]`` (or, with a fixed address, keeps it) and drops every pooled
  connection, so the held requests, released right after, connect to the new primary.
* A write returns its id only after ``COMMIT`` returned.  If the server refuses it
  (read_only: 1290) or the connection is lost, :class:`WriteFailed` is raised and the
  app answers 5xx: the client is never told a write happened when it may not have.
  Such a failure also makes the next requests re-read the published endpoint (that is
  how the app follows a swap done with ``--no-pause``, which sends no resume payload).

Only the application account (``[lab] app_user``) is used: it cannot bypass read_only.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pymysql
import redis
from pymysql.connections import Connection

from roleswap.config import Config, load_config
from roleswap.coord.endpoint import current_primary

log = logging.getLogger("roleswap.demo")

ENV_CONFIG = "ROLESWAP_CONFIG"
TABLE = "demo_writes"
SCHEMA = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  k CHAR(32) NOT NULL,
  server_id INT UNSIGNED NOT NULL,
  created DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY uk_k (k)
) ENGINE=InnoDB"""

# Errors after which the write was certainly (1290) or possibly (connection) not done,
# and the primary may have moved.
READ_ONLY_CODES = frozenset({1290, 1836})  # ER_OPTION_PREVENTS_STATEMENT, ER_READ_ONLY_MODE
LOST_CODES = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055})
RECHECK_EVERY = 0.02  # seconds between endpoint re-reads after a failure


class WriteFailed(Exception):
    """The request was not done (or may not have been): answer 5xx, never acknowledge."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Primary:
    name: str
    host: str
    port: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Primary:
        return cls(str(d["name"]), str(d["host"]), int(d["port"]))


@dataclass(frozen=True)
class Fixed:
    """The one address the app connects to when the switch method moves what is behind it:
    a VIP (``via`` "vip"; ``port`` None = the primary's port) or HAProxy's frontend ("haproxy")."""

    via: str
    host: str
    port: int | None = None

    @property
    def label(self) -> str:
        return "the VIP" if self.via == "vip" else "HAProxy"


@dataclass(frozen=True)
class Settings:
    config_path: str
    pool_size: int = 8
    max_hold: float = 10.0
    connect_timeout: float = 2.0
    io_timeout: float = 5.0

    @classmethod
    def from_env(cls) -> Settings:
        path = os.environ.get(ENV_CONFIG)
        if not path:
            raise RuntimeError(f"set {ENV_CONFIG} to the roleswap config file (e.g. .lab/roleswap.toml)")
        return cls(
            config_path=path,
            pool_size=int(os.environ.get("DEMO_POOL_SIZE", "8")),
            max_hold=float(os.environ.get("DEMO_MAX_HOLD", "10")),
        )


@dataclass
class _Pooled:
    conn: Connection[Any]
    generation: int
    primary: Primary


class Database:
    """Thread-safe access to the current primary with the application account."""

    def __init__(self, config: Config, *, pool_size: int = 8, connect_timeout: float = 2.0,
                 io_timeout: float = 5.0) -> None:
        if config.lab is None:
            raise RuntimeError(f"{config.source} has no [lab] app_user/app_password/database")
        self.config = config
        self.user = config.lab.app_user
        self._password = config.lab.app_password
        self.database = config.lab.database
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self._lock = threading.Lock()
        self._idle: list[_Pooled] = []
        self._generation = 0
        self._recheck = False
        self._last_check = 0.0
        self.switches: list[tuple[float, str, str]] = []  # (monotonic, primary name, why)
        self.fixed = fixed_address(config)  # None unless switch.method is "vip" or "haproxy"
        self._names: dict[int, str] | None = None  # server_id -> configured name (fixed address)
        self._redis = (redis.Redis.from_url(config.redis_url.reveal(), socket_timeout=1.0,
                                            socket_connect_timeout=1.0)
                       if config.redis_url else None)
        self.primary = self.discover()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(load_config(settings.config_path), pool_size=settings.pool_size,
                   connect_timeout=settings.connect_timeout, io_timeout=settings.io_timeout)

    # ------------------------------------------------------------ where is the primary
    def published(self) -> Primary | None:
        """The endpoint roleswap published in Redis, if any (None if unreachable)."""
        if self._redis is None:
            return None
        try:
            data = current_primary(self._redis, self.config.cluster)
        except (redis.RedisError, OSError, ValueError) as e:
            log.warning("demo: cannot read the published primary: %s", type(e).__name__)
            return None
        return Primary.from_dict(data) if data else None

    def _ask_each(self, sql: str) -> dict[str, Any]:
        """The single value ``sql`` returns on each configured server that answers
        (direct connections with the app account, not through a VIP or HAProxy)."""
        out: dict[str, Any] = {}
        for s in self.config.servers.values():
            try:
                conn = self._connect(Primary(s.name, s.host, s.port))
            except pymysql.MySQLError:
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    row = cur.fetchone()
                if row is not None:
                    out[s.name] = row[0]
            finally:
                _close(conn)
        return out

    def writable_server(self) -> Primary:
        """The one configured server with read_only = 0 (asked with the app account)."""
        writable = [self.config.servers[name] for name, ro in
                    self._ask_each("SELECT @@GLOBAL.read_only").items() if int(ro) == 0]
        if len(writable) != 1:
            names = ", ".join(s.name for s in writable) or "none"
            raise RuntimeError(f"expected exactly one writable server, found: {names}")
        s = writable[0]
        return Primary(s.name, s.host, s.port)

    def discover(self) -> Primary:
        if self.fixed is not None:
            return self.through_fixed()
        return self.published() or self.writable_server()

    def through_fixed(self) -> Primary:
        """The server a new connection to the VIP / HAProxy frontend reaches (its host and
        port stay the fixed address)."""
        assert self.fixed is not None
        port = self.fixed.port
        if port is None:  # a VIP without vip_port; as roleswap's check: the port of the primary
            port = self.writable_server().port
        via = Primary(self.fixed.via, self.fixed.host, port)
        conn = self._connect(via)
        try:
            return replace(via, name=self._server_name(conn))
        finally:
            _close(conn)

    def _server_name(self, conn: Connection[Any]) -> str:
        """The configured name of the server behind ``conn`` (by ``@@server_id``)."""
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            row = cur.fetchone()
        sid = int(row[0]) if row else -1
        if self._names is None or sid not in self._names:
            self._names = {int(v): name for name, v in self._ask_each("SELECT @@server_id").items()}
        return self._names.get(sid, f"server_id {sid}")

    def switch_to(self, primary: Primary, why: str, *, force: bool = False) -> bool:
        """Use ``primary`` from now on; drop idle connections (busy ones are dropped on return).
        ``force``: drop them even if ``primary`` is unchanged (a VIP or HAProxy that moved)."""
        with self._lock:
            if primary == getattr(self, "primary", None) and not force:
                return False
            self.primary = primary
            self._generation += 1
            stale, self._idle = self._idle, []
            self.switches.append((time.monotonic(), primary.name, why))
        for p in stale:
            _close(p.conn)
        log.info("demo: primary is now %s (%s:%d): %s", primary.name, primary.host, primary.port, why)
        return True

    def on_resume(self, payload: dict[str, Any] | None) -> None:
        """intermission hook: runs before this process releases its held requests."""
        target = (payload or {}).get("primary")
        if self.fixed is not None:  # same address, maybe another server behind it
            name = str(target.get("name")) if isinstance(target, dict) else self.primary.name
            how = "payload" if isinstance(target, dict) else "without payload"
            why = f"resume {how} (reconnect through {self.fixed.label})"
            self.switch_to(replace(self.primary, name=name), why, force=True)
        elif isinstance(target, dict):
            self.switch_to(Primary.from_dict(target), "resume payload")
        else:  # a pause that expired or was resumed without a payload: ask again
            self.switch_to(self.discover(), "resume without payload")

    def _maybe_recheck(self) -> None:
        if not self._recheck:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last_check < RECHECK_EVERY:
                return
            self._last_check = now
        if self.fixed is not None:  # the VIP / HAProxy may have moved: new connections find out
            self.switch_to(self.primary, f"reconnect through {self.fixed.label} after a failure",
                           force=True)
            return
        found = self.published()
        if found is not None:
            self.switch_to(found, "published endpoint after a failed write")

    # ------------------------------------------------------------ connections
    def _connect(self, p: Primary) -> Connection[Any]:
        kwargs: dict[str, Any] = {}
        if not self.config.tls:
            kwargs["ssl_disabled"] = True
        return pymysql.connect(
            # UTF-8, like roleswap.mysql.conn (PyMySQL would send a str password as latin-1)
            host=p.host, port=p.port, user=self.user, password=self._password.reveal().encode(),
            database=self.database, autocommit=True, connect_timeout=self.connect_timeout,
            read_timeout=self.io_timeout, write_timeout=self.io_timeout, charset="utf8mb4",
            **kwargs,
        )

    @contextmanager
    def connection(self) -> Iterator[_Pooled]:
        """A pooled connection to the current primary; discarded if the block raises."""
        self._maybe_recheck()
        with self._lock:
            gen, primary = self._generation, self.primary
            item = self._idle.pop() if self._idle else None
        if item is None:
            try:
                conn = self._connect(primary)
            except pymysql.MySQLError as e:
                raise _failed(e, self, "connect") from None
            if self.fixed is not None:
                try:
                    primary = replace(primary, name=self._server_name(conn))
                except pymysql.MySQLError as e:
                    _close(conn)
                    raise _failed(e, self, "connect") from None
            item = _Pooled(conn, gen, primary)
        try:
            yield item
        except BaseException:
            _close(item.conn)
            raise
        with self._lock:
            keep = item.generation == self._generation and len(self._idle) < self.pool_size
            if keep:
                self._idle.append(item)
        if not keep:
            _close(item.conn)

    # ------------------------------------------------------------ the app's queries
    def ensure_schema(self) -> None:
        with self.connection() as c, c.conn.cursor() as cur:
            cur.execute(SCHEMA)

    def write(self, key: str | None = None) -> dict[str, Any]:
        """Insert one row; return {id, k, server} only after COMMIT succeeded."""
        key = key or uuid.uuid4().hex
        if len(key) > 32 or not key.isalnum():
            raise ValueError("k must be 1-32 letters/digits")
        with self.connection() as c:
            try:
                c.conn.begin()
                with c.conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {TABLE} (k, server_id) VALUES (%s, @@server_id)", (key,))
                    new_id = int(cur.lastrowid)
                c.conn.commit()
            except pymysql.MySQLError as e:
                raise _failed(e, self, "write") from None
        self._recheck = False
        return {"id": new_id, "k": key, "server": c.primary.name}

    def read(self, row_id: int | None = None) -> dict[str, Any] | None:
        """One row by id (None if absent), or the newest row."""
        with self.connection() as c:
            try:
                with c.conn.cursor() as cur:
                    if row_id is None:
                        cur.execute(f"SELECT id, k, server_id FROM {TABLE} ORDER BY id DESC LIMIT 1")
                    else:
                        cur.execute(f"SELECT id, k, server_id FROM {TABLE} WHERE id = %s", (row_id,))
                    row = cur.fetchone()
            except pymysql.MySQLError as e:
                raise _failed(e, self, "read") from None
        if row is None:
            return None
        return {"id": int(row[0]), "k": str(row[1]), "server_id": int(row[2]), "server": c.primary.name}


def fixed_address(config: Config) -> Fixed | None:
    """Where the app always connects with the vip method (the VIP) or the haproxy method
    (the first instance's frontend); None with any other method (the endpoint)."""
    if config.switch_method == "haproxy":
        from roleswap.switch.haproxy_config import haproxy_settings

        host, port = haproxy_settings(config).instances[0].frontend
        return Fixed("haproxy", host, port)
    if config.switch_method != "vip":
        return None
    raw = config.switch.get("vip")
    try:
        host = str(ipaddress.ip_interface(str(raw)).ip)
    except ValueError:
        raise RuntimeError(f"{config.source}: switch.vip = {raw!r} is not an address/prefix") from None
    vip_port = config.switch.get("vip_port")  # else (as roleswap's check) the primary's port
    ok = isinstance(vip_port, int) and not isinstance(vip_port, bool)
    return Fixed("vip", host, vip_port if ok else None)


def _failed(e: pymysql.MySQLError, db: Database, doing: str) -> WriteFailed:
    args = getattr(e, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if code in READ_ONLY_CODES or code in LOST_CODES or isinstance(e, pymysql.err.InterfaceError):
        db._recheck = True  # the primary may have moved: re-read the endpoint
    why = "read_only" if code in READ_ONLY_CODES else "connection lost" if code in LOST_CODES else "error"
    return WriteFailed(f"{doing} failed ({why}, MySQL error {code})", code)


def _close(conn: Connection[Any]) -> None:
    try:
        conn.close()
    except Exception:  # already broken: nothing to do
        log.debug("demo: closing a broken connection", exc_info=True)
