"""Shared fixtures: real servers started by the project's own lab code, torn down by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from roleswap.config import Config, load_config
from roleswap.lab import Lab, lab_down, lab_up
from roleswap.lab.mariadb import root_connect_socket
from roleswap.lab.redis_server import RedisServer, start_redis


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

    def query(self, name: str, sql: str, args: object = None) -> list[tuple[object, ...]]:
        conn = self.root(name)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """One shared lab for the session. Tests must leave it as they found it (db1 primary)."""
    started = lab_up(tmp_path_factory.mktemp("lab") / "lab")
    yield RunningLab(started)
    lab_down(started.dir)


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """A fresh lab of the module's own, for destructive tests."""
    started = lab_up(tmp_path_factory.mktemp("modlab") / "lab")
    yield RunningLab(started)
    lab_down(started.dir)
