"""Connection options and error messages (never a password)."""

from __future__ import annotations

import socket
from typing import Any

import pymysql
import pytest

from roleswap.config import Credentials, Secret, ServerConfig
from roleswap.errors import ServerError
from roleswap.mysql import conn as conn_mod
from roleswap.mysql.conn import connect, describe, run, server_error

PW = "hunter2-Very-Secret"
CREDS = Credentials("ctl", Secret(PW))
DB1 = ServerConfig(name="db1", host="127.0.0.1", port=3306)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_connect(**kwargs: Any) -> str:
        seen.update(kwargs)
        return "conn"

    monkeypatch.setattr(conn_mod.pymysql, "connect", fake_connect)
    return seen


def test_connect_tcp_without_tls(captured: dict[str, Any]) -> None:
    assert connect(DB1, CREDS, timeout=2.5, tls=False) == "conn"
    assert captured["host"] == "127.0.0.1" and captured["port"] == 3306
    assert "unix_socket" not in captured
    assert captured["ssl_disabled"] is True
    assert captured["autocommit"] is True
    assert captured["connect_timeout"] == 2.5
    assert captured["read_timeout"] == 2.5 and captured["write_timeout"] == 2.5
    assert captured["user"] == "ctl" and captured["password"] == PW.encode()  # UTF-8, not latin-1


def test_connect_socket_tls_and_read_timeout(captured: dict[str, Any]) -> None:
    server = ServerConfig(name="db1", host="h", port=3306, socket="/run/db1.sock",
                          extra={"ssl_ca": "/etc/ca.pem"})
    connect(server, CREDS, timeout=1, tls=True, read_timeout=60)
    assert captured["unix_socket"] == "/run/db1.sock" and "host" not in captured
    assert "ssl_disabled" not in captured
    assert captured["ssl_ca"] == "/etc/ca.pem" and captured["ssl_verify_cert"] is True
    assert captured["read_timeout"] == 60


def test_connect_tls_preferred_without_ca(captured: dict[str, Any]) -> None:
    connect(DB1, CREDS, timeout=1, tls=True)
    assert "ssl_disabled" not in captured and "ssl_ca" not in captured


def test_connect_refused_is_server_error_naming_server() -> None:
    port = free_port()
    server = ServerConfig(name="dbx", host="127.0.0.1", port=port)
    with pytest.raises(ServerError) as ei:
        connect(server, CREDS, timeout=1, tls=False)
    msg = str(ei.value)
    assert msg.startswith(f"dbx (127.0.0.1:{port}): connect failed: [2003]")
    assert PW not in msg and PW not in ei.value.remedy
    assert "servers.dbx.host/port" in ei.value.remedy


def test_access_denied_remedy_and_scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(**kwargs: Any) -> None:
        raise pymysql.err.OperationalError(1045, f"Access denied for 'ctl' (echo {PW})")

    monkeypatch.setattr(conn_mod.pymysql, "connect", deny)
    with pytest.raises(ServerError) as ei:
        connect(DB1, CREDS, timeout=1, tls=False)
    assert PW not in str(ei.value)
    assert "echo ***" in str(ei.value)
    assert "[mysql] user/password" in ei.value.remedy


def test_describe_socket() -> None:
    assert describe(ServerConfig(name="a", host="h", socket="/s")) == "a (socket /s)"
    assert describe(DB1) == "db1 (127.0.0.1:3306)"


def test_server_error_non_mysql_exception() -> None:
    err = server_error(DB1, OSError("boom"), doing="read")
    assert str(err) == "db1 (127.0.0.1:3306): read failed: boom"
    err = server_error(DB1, pymysql.err.OperationalError(2013, "Lost connection"), doing="x")
    assert "dropped the connection" in err.remedy


class FakeCursor:
    def __init__(self, log: list[tuple[str, Any]], fail_on: str | None) -> None:
        self.log, self.fail_on = log, fail_on

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *a: object) -> None:
        pass

    def execute(self, sql: str, params: Any) -> None:
        self.log.append((sql, params))
        if self.fail_on and self.fail_on in sql:
            # servers echo the interpolated statement in syntax errors
            raise pymysql.err.ProgrammingError(1064, f"syntax near '{params}'")

    def fetchall(self) -> list[dict[str, Any]]:
        return [{"n": len(self.log)}]


class FakeConn:
    def __init__(self, fail_on: str | None = None) -> None:
        self.log: list[tuple[str, Any]] = []
        self.fail_on = fail_on

    def cursor(self, cls: Any = None) -> FakeCursor:
        return FakeCursor(self.log, self.fail_on)


def test_run_passes_params_separately_and_returns_last_rows() -> None:
    c = FakeConn()
    rows = run(c, DB1, [("SET SESSION lock_wait_timeout=%s", (3,)),  # type: ignore[arg-type]
                        ("SET GLOBAL read_only=1", ())])
    assert c.log == [("SET SESSION lock_wait_timeout=%s", (3,)), ("SET GLOBAL read_only=1", None)]
    assert rows == [{"n": 2}]


def test_run_masks_params_of_password_statements() -> None:
    c = FakeConn(fail_on="CHANGE")
    sql = "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PASSWORD=%s"
    with pytest.raises(ServerError) as ei:
        run(c, DB1, [(sql, ("db2", PW))])  # type: ignore[arg-type]
    msg = str(ei.value)
    assert PW not in msg and "***" in msg
    assert msg.startswith(f"db1 (127.0.0.1:3306): {sql!r} failed: [1064]")


def test_run_does_not_mask_ordinary_statements() -> None:
    c = FakeConn(fail_on="WAIT")
    with pytest.raises(ServerError) as ei:
        run(c, DB1, [("SELECT MASTER_GTID_WAIT(%s, %s)", ("0-1-5", 1.0))])  # type: ignore[arg-type]
    assert "0-1-5" in str(ei.value)
