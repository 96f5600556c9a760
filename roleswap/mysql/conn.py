"""Connections to the managed servers, and errors that never leak secrets.

Every pymysql failure leaves this module as a :class:`ServerError` whose
message names the server and its address and whose remedy says what to check.
The password is never part of a message: pymysql does not put it there, and
we scrub it anyway in case a server echoes it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pymysql
import pymysql.cursors
from pymysql.connections import Connection

from roleswap.config import Credentials, ServerConfig
from roleswap.errors import ServerError

Stmt = tuple[str, tuple[Any, ...]]

# MySQL client / server error numbers we give specific advice for.
_ACCESS_DENIED = 1045
_UNKNOWN_HOST = 2005
_CANT_CONNECT = (2002, 2003)
_LOST = (2006, 2013)


def describe(server: ServerConfig) -> str:
    """``db1 (127.0.0.1:3306)`` or ``db1 (socket /run/x.sock)`` for messages."""
    where = f"socket {server.socket}" if server.socket else server.address
    return f"{server.name} ({where})"


def _scrub(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _error_text(exc: BaseException) -> tuple[int | None, str]:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    return None, str(exc) or type(exc).__name__


def server_error(
    server: ServerConfig, exc: BaseException, *, doing: str, secrets: Sequence[str] = ()
) -> ServerError:
    """A :class:`ServerError` for ``exc`` raised while ``doing`` something on ``server``;
    every string in ``secrets`` is masked in the server's message."""
    code, text = _error_text(exc)
    text = _scrub(text, *secrets)
    label = f"[{code}] {text}" if code is not None else text
    if code == _ACCESS_DENIED:
        remedy = "check [mysql] user/password in the config and the account's host grants"
    elif code in _CANT_CONNECT or code == _UNKNOWN_HOST:
        remedy = (f"check that {server.name} is running and that servers.{server.name}"
                  ".host/port (or socket) in the config are right")
    elif code in _LOST:
        remedy = f"{server.name} dropped the connection or timed out; check it is healthy"
    else:
        remedy = f"check {server.name}'s error log and the control account's privileges"
    return ServerError(f"{describe(server)}: {doing} failed: {label}", remedy=remedy)


def connect(
    server: ServerConfig,
    creds: Credentials,
    *,
    timeout: float,
    tls: bool,
    read_timeout: float | None = None,
) -> Connection[Any]:
    """Open an autocommit connection to ``server`` or raise :class:`ServerError`.

    ``timeout`` bounds the TCP connect and handshake; ``read_timeout``
    (default ``timeout``) bounds every later read and write, so it must
    exceed any server-side wait (MASTER_GTID_WAIT ...) run on the connection.
    ``tls=False`` disables TLS outright: PyMySQL 1.2 otherwise builds a TLS
    context per connect (~20 ms), even on a unix socket.  ``tls=True`` uses
    TLS when the server offers it, and verifies against
    ``servers.<name>.ssl_ca`` when that is set.
    """
    secret = creds.password.reveal()
    io_timeout = read_timeout if read_timeout is not None else timeout
    kwargs: dict[str, Any] = {
        "user": creds.user,
        "password": secret,
        "connect_timeout": timeout,
        "read_timeout": io_timeout,
        "write_timeout": io_timeout,
        "autocommit": True,
        "charset": "utf8mb4",
        "cursorclass": pymysql.cursors.DictCursor,
    }
    if server.socket:
        kwargs["unix_socket"] = server.socket
    else:
        kwargs["host"] = server.host
        kwargs["port"] = server.port
    if not tls:
        kwargs["ssl_disabled"] = True
    elif server.extra.get("ssl_ca"):
        kwargs["ssl_ca"] = str(server.extra["ssl_ca"])
        kwargs["ssl_verify_cert"] = True
    try:
        return pymysql.connect(**kwargs)
    except (pymysql.MySQLError, OSError, ValueError) as e:
        raise server_error(server, e, doing="connect", secrets=(secret,)) from None


def query(conn: Connection[Any], sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run one statement and return its rows as dicts (``[]`` when it returns none).

    pymysql exceptions propagate; wrap them with :func:`server_error`.
    """
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(sql, tuple(params) if params else None)
        rows = cur.fetchall()
    return [dict(r) for r in rows] if rows else []


def run(conn: Connection[Any], server: ServerConfig, stmts: Sequence[Stmt]) -> list[dict[str, Any]]:
    """Run dialect statements in order; return the last one's rows.

    Failures become :class:`ServerError` naming the statement template (the
    SQL text carries no values).  A server may echo the statement with its
    values (syntax errors do), so for statements that set a password every
    string parameter is masked in the message.
    """
    rows: list[dict[str, Any]] = []
    for sql, params in stmts:
        try:
            rows = query(conn, sql, params)
        except (pymysql.MySQLError, OSError) as e:
            masked = [p for p in params if isinstance(p, str)] if "PASSWORD" in sql.upper() else []
            raise server_error(server, e, doing=repr(sql), secrets=masked) from None
    return rows
