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
_NO_PRIVILEGE = (1044, 1142, 1227)  # DB access denied, command denied, specific privilege needed


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


def error_kind(code: int | None) -> str:
    """``unreachable`` / ``access_denied`` / ``lost`` / ``error`` for a MySQL error number."""
    if code == _ACCESS_DENIED:
        return "access_denied"
    if code in _CANT_CONNECT or code == _UNKNOWN_HOST:
        return "unreachable"
    if code in _LOST:
        return "lost"
    return "error"


def explain_unreadable(name: str, address: str, kind: str | None, code: int | None,
                       error: str | None, config_source: str) -> tuple[str, str]:
    """(problem, remedy) for a server that could not be read, worded by ``kind``
    (see :class:`ServerError`): access denied is never called "unreachable"."""
    detail = error or "no detail"
    if kind == "access_denied":
        return (f"the control account was refused by {name} (access denied): {detail}",
                f"check [mysql] user/password in {config_source}, and that the account exists on "
                f"{name} with a host part that matches this machine")
    if kind == "unreachable":
        return (f"{name} is unreachable: {detail}",
                f"make sure {name} ({address}) is up and reachable from here, and that "
                f"servers.{name}.host/port (or socket) in {config_source} are right")
    if kind == "lost":
        return (f"{name} dropped the connection while being read: {detail}",
                f"check that {name} is healthy (its error log), then retry")
    what = f"error {code}" if code is not None else "an error"
    if code in _NO_PRIVILEGE:
        return (f"{name} could not be read ({what}: the control account lacks a privilege): {detail}",
                f"grant the control account on {name} the privilege the message names "
                "(README: the control account's grants)")
    return (f"{name} could not be read ({what}): {detail}",
            f"check {name}'s error log and the control account's privileges (README: Configuration)")


def server_error(
    server: ServerConfig, exc: BaseException, *, doing: str, secrets: Sequence[str] = ()
) -> ServerError:
    """A :class:`ServerError` for ``exc`` raised while ``doing`` something on ``server``;
    every string in ``secrets`` is masked in the server's message.  Its ``kind`` and
    ``code`` say what went wrong (see :class:`ServerError`)."""
    code, text = _error_text(exc)
    text = _scrub(text, *secrets)
    label = f"[{code}] {text}" if code is not None else text
    kind = error_kind(code)
    if code is None and doing == "connect" and isinstance(exc, OSError | TimeoutError):
        kind = "unreachable"
    if kind == "access_denied":
        remedy = "check [mysql] user/password in the config and the account's host grants"
        if any(not s.isascii() for s in secrets if s):
            remedy += ("; the password has non-ASCII characters and is sent as UTF-8: the account "
                       "must have been created from a UTF-8 (utf8mb4) client session")
    elif kind == "unreachable":
        remedy = (f"check that {server.name} is running and that servers.{server.name}"
                  ".host/port (or socket) in the config are right")
    elif kind == "lost":
        remedy = f"{server.name} dropped the connection or timed out; check it is healthy"
    else:
        remedy = f"check {server.name}'s error log and the control account's privileges"
    return ServerError(f"{describe(server)}: {doing} failed: {label}", remedy=remedy,
                       kind=kind, code=code)


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
    ``servers.<name>.ssl_ca`` when that is set.  User name and password are
    sent as UTF-8 (the session character set is utf8mb4), so any password an
    account was created with from a UTF-8 client works, whatever its plugin
    (mysql_native_password, ed25519, caching_sha2_password...).
    """
    secret = creds.password.reveal()
    io_timeout = read_timeout if read_timeout is not None else timeout
    kwargs: dict[str, Any] = {
        "user": creds.user,
        # UTF-8 bytes, as the mysql/mariadb clients send what is typed on a UTF-8 terminal:
        # PyMySQL would encode a str password as latin-1, which fails for "密" and sends
        # other bytes than the server hashed for "ü" (the handshake is utf8mb4 too).
        "password": secret.encode("utf-8"),
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
    except (pymysql.MySQLError, OSError, ValueError, RuntimeError) as e:
        # RuntimeError: PyMySQL lacks what an auth plugin needs (e.g. PyNaCl for ed25519)
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
