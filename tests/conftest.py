"""Shared fixtures: real servers started by the project's own lab code, torn down by PID."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from roleswap.config import Config, load_config
from roleswap.lab import Lab, lab_down, lab_up
from roleswap.lab.mariadb import root_connect_socket
from roleswap.lab.redis_server import RedisServer, start_redis
from roleswap.mysql.dialect import (
    Dialect,
    ReplicaStatus,
    Stmt,
    dialect_for,
    gtid_wait_reached,
    pos_wait_reached,
)
from roleswap.testing.interrupt import teardown_on_sigterm

# The server flavor the labs run: `pytest --server mysql-9.7` (or ROLESWAP_TEST_SERVER);
# scripts/test runs the server-dependent suites once per flavor.
SERVER_ENV = "ROLESWAP_TEST_SERVER"
DEFAULT_SERVER = "mariadb-10.11"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--server", default=os.environ.get(SERVER_ENV) or DEFAULT_SERVER,
                     help="lab server flavor for the integration, fault and e2e suites "
                          f"(default {DEFAULT_SERVER}; see `roleswap lab servers`)")
    parser.addoption("--flavor-rerun", action="store_true",
                     help="this run repeats the suites on a further --server (scripts/test): "
                          "deselect the tests whose outcome cannot depend on it")


# A test depends on the flavor when it asks for one of these fixtures (directly or through
# the fixtures it uses); every lab, cluster and flavor table parametrization goes through them.
FLAVOR_FIXTURES = frozenset({"server_flavor", "flavor_name"})


def runs_the_same_on_every_flavor(item: pytest.Item) -> bool:
    """True when ``item`` would only repeat itself on a further flavor: it never asks for
    the flavor (its servers, if any, are always the default flavor), or it is marked
    ``flavor_independent("why")`` (it uses the flavor, but what it adds over the tests
    that run on every flavor is not the server's side)."""
    return (item.get_closest_marker("flavor_independent") is not None
            or FLAVOR_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --flavor-rerun, deselect what a further flavor would only repeat (CI's time)."""
    if not config.getoption("--flavor-rerun"):
        return
    keep, drop = [], []
    for item in items:
        (drop if runs_the_same_on_every_flavor(item) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (CI cancelling or timing out the run) tears the labs down as Ctrl-C does:
    # their servers run in sessions of their own and would outlive us otherwise.
    teardown_on_sigterm()


def pytest_report_header(config: pytest.Config) -> str:
    return f"roleswap lab server: {config.getoption('--server')}"


@pytest.fixture(scope="session")
def server_flavor(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--server"))


def start_lab(directory: Path, flavor: str, **kwargs: object) -> Lab:
    """``lab_up`` on the session's server flavor (the default needs no download)."""
    if flavor != DEFAULT_SERVER:
        kwargs["server"] = flavor
    return lab_up(directory, **kwargs)  # type: ignore[arg-type]


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(
    not is_root(), reason="needs root (network namespaces / VIP); CI runs these as root"
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session (tests use their own keys/scopes)."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that kill or restart it."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


class RunningLab:
    """A lab started by the same code as `roleswap lab up`, with its config loaded."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = lab.dir
        self.config_path = lab.config_path
        self.config: Config = load_config(lab.config_path)
        self._dialects: dict[str, Dialect] = {}

    def root(self, name: str) -> pymysql.connections.Connection:
        """A root connection (unix socket) to node ``name`` for test setup/inspection."""
        node = self.lab.node(name)
        return root_connect_socket(Path(node.dir) / "mysqld.sock")

    def app(self, name: str, autocommit: bool = True) -> pymysql.connections.Connection:
        """An application-account connection to ``name`` over TCP.  Use it for sessions
        that stay open during a swap: a root session can write through read_only, and
        preflight refuses to swap while one is open on --from."""
        assert self.config.lab is not None
        s = self.config.servers[name]
        return pymysql.connect(host=s.host, port=s.port, user=self.config.lab.app_user,
                               password=self.config.lab.app_password.reveal(),
                               autocommit=autocommit, ssl_disabled=True, connect_timeout=5)

    def control(self, name: str) -> pymysql.connections.Connection:
        """A control-account connection to ``name`` over TCP, for watching a swap while it
        runs: preflight does not count the control account's sessions as writers through
        read_only (a root session opened then would make it refuse)."""
        s = self.config.servers[name]
        return pymysql.connect(host=s.host, port=s.port, user=self.config.mysql.user,
                               password=self.config.mysql.password.reveal(), autocommit=True,
                               ssl_disabled=True, connect_timeout=5)

    def query(self, name: str, sql: str, args: object = None) -> list[tuple[object, ...]]:
        conn = self.root(name)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    # -- flavor-neutral SQL: every statement as the node's dialect spells it -------------
    def dialect(self, name: str) -> Dialect:
        """The SQL dialect of node ``name``, asked once per lab and node."""
        if name not in self._dialects:
            self._dialects[name] = dialect_for(str(self.query(name, "SELECT VERSION()")[0][0]))
        return self._dialects[name]

    def run(self, name: str, stmts: list[Stmt]) -> list[dict[str, object]]:
        """Run dialect statements as root on ``name``, in order; the last one's rows."""
        conn = self.root(name)
        rows: list[dict[str, object]] = []
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                for sql, params in stmts:
                    cur.execute(sql, params or None)
                    rows = [dict(r) for r in cur.fetchall()]
        finally:
            conn.close()
        return rows

    def replica(self, name: str) -> ReplicaStatus | None:
        """``name``'s default replication channel (None: not a replica)."""
        channels = [ReplicaStatus.from_row(r)
                    for r in self.run(name, [self.dialect(name).replica_status()])]
        return next((c for c in channels if c.channel == ""), channels[0] if channels else None)

    def gtid_position(self, name: str) -> str:
        """What ``name`` has logged (gtid_binlog_pos / gtid_executed), canonical text."""
        d = self.dialect(name)
        return str(d.parse_gtid(str(self.run(name, [d.gtid_position()])[0]["g"] or "")))

    def gtid_applied(self, name: str) -> str:
        """Everything ``name`` has applied (gtid_current_pos / gtid_executed), canonical."""
        d = self.dialect(name)
        return str(d.parse_gtid(str(self.run(name, [d.gtid_applied()])[0]["g"] or "")))

    def wait_gtid(self, name: str, position: str, timeout: float = 20) -> bool:
        """Until ``name`` has applied ``position`` (True), or ``timeout`` s (False)."""
        rows = self.run(name, [self.dialect(name).wait_for_gtid(position, timeout)])
        return gtid_wait_reached(next(iter(rows[0].values())))

    def wait_caught_up(self, name: str, primary: str, timeout: float = 20) -> bool:
        """Until replica ``name`` has applied everything ``primary`` has logged: by GTID, or
        by binlog coordinates where it replicates by file/position (MySQL then has no
        GTIDs to wait for)."""
        r = self.replica(name)
        if r is not None and not r.gtid_mode:
            st = self.run(primary, [self.dialect(primary).binlog_status()])[0]
            rows = self.run(name, [self.dialect(name).wait_for_pos(
                str(st["File"]), int(str(st["Position"])), timeout)])
            return pos_wait_reached(next(iter(rows[0].values()))) is True
        return self.wait_gtid(name, self.gtid_position(primary), timeout)

    def stop_replica(self, name: str, thread: str = "") -> None:
        """STOP SLAVE / STOP REPLICA on ``name`` (``thread``: "IO_THREAD" or "SQL_THREAD")."""
        self.run(name, [(f"{self.dialect(name).stop_replica_sql} {thread}".strip(), ())])

    def start_replica(self, name: str, thread: str = "") -> None:
        """START SLAVE / START REPLICA on ``name`` (``thread``: "IO_THREAD" or "SQL_THREAD")."""
        self.run(name, [(f"{self.dialect(name).start_replica_sql} {thread}".strip(), ())])

    def change_source(self, name: str, **options: object) -> None:
        """CHANGE MASTER / REPLICATION SOURCE TO on ``name`` (replication stopped), options
        named without their prefix: ``change_source("db2", DELAY=30)`` is MASTER_DELAY=30
        on MariaDB, SOURCE_DELAY=30 on MySQL."""
        d = self.dialect(name)
        opts = ", ".join(f"{d.kw}_{k}=%s" for k in options)
        self.run(name, [(f"{d.change_source_sql} {opts}", tuple(options.values()))])

    def replicate_from(self, name: str, source: str, timeout: float = 10) -> None:
        """Point ``name`` at ``source`` by GTID (the lab's replication account) and start it;
        returns once both threads run (the IO thread is "Connecting" for a few ms first)."""
        d = self.dialect(name)
        src, repl = self.config.servers[source], self.config.replication
        self.run(name, d.stop_replication() + d.point_to_source_gtid(
            src.host, src.port, repl.user, repl.password.reveal()) + d.start_replication())
        deadline = time.monotonic() + timeout
        while not ((r := self.replica(name)) is not None and r.running):
            assert time.monotonic() < deadline, f"{name} does not replicate from {source}: {r}"
            time.sleep(0.01)

    def forget_source(self, name: str) -> None:
        """STOP + RESET SLAVE/REPLICA ALL on ``name``."""
        self.run(name, self.dialect(name).reset_replication())

    def set_read_only(self, name: str, on: bool) -> None:
        """Fence (``on``: super_read_only where the flavor has it) or unfence ``name``, as
        roleswap does it."""
        d = self.dialect(name)
        self.run(name, d.read_only() if on else d.unfence())

    @contextlib.contextmanager
    def root_through_fence(self, name: str) -> Iterator[None]:
        """While inside: root sessions on ``name`` can write even if it is fenced.  MariaDB's
        read_only lets root through anyway; MySQL's super_read_only is lifted (read_only
        stays on, so the application account still cannot write) and put back as it was."""
        d = self.dialect(name)
        lift = d.has_super_read_only and bool(int(str(
            self.query(name, "SELECT @@GLOBAL.super_read_only")[0][0])))
        if lift:
            self.query(name, "SET GLOBAL super_read_only=0")
        try:
            yield
        finally:
            if lift:
                self.query(name, "SET GLOBAL super_read_only=1")

    def write_through_fence(self, name: str, *stmts: str | Stmt) -> None:
        """Run writes (SQL text, or ``(sql, params)``) as root on ``name``, in one session,
        even while it is fenced (see :meth:`root_through_fence`)."""
        with self.root_through_fence(name):
            conn = self.root(name)
            try:
                with conn.cursor() as cur:
                    for stmt in stmts:
                        sql, params = (stmt, None) if isinstance(stmt, str) else stmt
                        cur.execute(sql, params or None)
            finally:
                conn.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, server_flavor: str) -> Iterator[RunningLab]:
    """One shared lab for the session. Tests must leave it as they found it (db1 primary)."""
    started = start_lab(tmp_path_factory.mktemp("lab") / "lab", server_flavor)
    yield RunningLab(started)
    lab_down(started.dir)


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory, server_flavor: str) -> Iterator[RunningLab]:
    """A fresh lab of the module's own, for destructive tests."""
    started = start_lab(tmp_path_factory.mktemp("modlab") / "lab", server_flavor)
    yield RunningLab(started)
    lab_down(started.dir)
