"""Who can write through the fence: privileged sessions, events, and killing them.

The fence is ``read_only`` (MariaDB) or ``super_read_only`` (MySQL).  MariaDB's
``read_only`` stops every account except those holding READ ONLY ADMIN (10.11+;
before 10.11 SUPER included it), granted directly or through a role.  A session of
such an account keeps writing on a fenced primary, and those writes would be lost
by a swap.  MySQL's ``super_read_only`` stops every account, so on MySQL this
module finds nothing (only replication appliers write there, checked elsewhere).

Everything here reads; :func:`kill_sessions` is the only writer (``KILL
CONNECTION``, used by ``--kill-privileged`` right after the fence).  Grant text is
never returned or printed: SHOW GRANTS can carry password hashes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysql.connections import Connection

from roleswap.mysql.conn import query
from roleswap.mysql.dialect import Dialect
from roleswap.mysql.grants import ALL, AccountGrants, canonical

# Not client sessions: server threads and replicas' dump threads (which only read).
_NOT_CLIENTS = ("system user", "event_scheduler", "unauthenticated user", "")
_NOT_WRITERS = ("Binlog Dump", "Binlog Dump GTID", "Daemon", "Killed")
_UNKNOWN_THREAD = 1094


@dataclass(frozen=True)
class Session:
    """One client session on a server (from information_schema.PROCESSLIST)."""

    id: int
    user: str
    host: str
    command: str
    seconds: int

    def __str__(self) -> str:
        return f"{self.id} ({self.user}@{self.host.rsplit(':', 1)[0]}, {self.command} {self.seconds}s)"


@dataclass(frozen=True)
class Event:
    """An enabled scheduled event and its definer (it runs with the definer's privileges)."""

    schema: str
    name: str
    definer: str

    @property
    def definer_user(self) -> str:
        return self.definer.rsplit("@", 1)[0]


def _bypasses(privilege: str, bypass: Iterable[str]) -> bool:
    """One privilege (any spelling, see :func:`grants.canonical`) lets a session through."""
    p = canonical(privilege)
    return p == ALL or p in {canonical(b) for b in bypass}


def _user_of(grantee: str) -> str:
    """``'app'@'%'`` -> ``app``."""
    user = grantee.rsplit("@", 1)[0]
    return user.strip("'`\"")


def bypass_users(conn: Connection[Any], dialect: Dialect) -> dict[str, str]:
    """User names with an account that can write through the fence -> how.

    Conservative by user name: if any ``user@host`` account of that name can, every
    session of that name counts (PROCESSLIST does not say which account matched).
    Roles count whether or not they are the default role (a session can SET ROLE).
    Needs SELECT on ``mysql.*`` (the control account's global SELECT).
    """
    bypass = dialect.fence_bypass_privileges
    if not bypass:
        return {}
    out: dict[str, str] = {}
    rows = query(conn, "SELECT GRANTEE AS g, PRIVILEGE_TYPE AS p "
                       "FROM information_schema.USER_PRIVILEGES")
    for r in rows:
        if _bypasses(str(r["p"]), bypass):
            out.setdefault(_user_of(str(r["g"])), canonical(str(r["p"])))
    # Roles (MariaDB): mysql.roles_mapping says who holds which role (a role may hold roles).
    try:
        mapping = query(conn, "SELECT User AS u, Host AS h, Role AS r FROM mysql.roles_mapping")
    except pymysql.MySQLError:
        return out
    roles = {str(m["r"]) for m in mapping}
    strong_roles = {r for r in roles if _role_bypasses(conn, r, bypass)}
    changed = True
    while changed:  # roles granted to roles (Host '' marks a role as the grantee)
        changed = False
        for m in mapping:
            if str(m["h"]) == "" and str(m["r"]) in strong_roles and str(m["u"]) not in strong_roles:
                strong_roles.add(str(m["u"]))
                changed = True
    for m in mapping:
        if str(m["h"]) != "" and str(m["r"]) in strong_roles:
            out.setdefault(str(m["u"]), f"role {m['r']}")
    return out


def _role_bypasses(conn: Connection[Any], role: str, bypass: Iterable[str]) -> bool:
    """The role holds a bypass privilege ON *.* (SHOW GRANTS parsed by scope)."""
    try:
        rows = query(conn, "SHOW GRANTS FOR %s", (role,))
    except pymysql.MySQLError:
        return False
    grants = AccountGrants.parse(str(next(iter(row.values()))) for row in rows)
    return any(grants.has_global(b) for b in bypass)


def sessions(conn: Connection[Any]) -> list[Session]:
    """Every client session except this connection's own."""
    rows = query(conn, "SELECT ID AS id, USER AS user, HOST AS host, COMMAND AS command, "
                       "TIME AS t FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()")
    out = []
    for r in rows:
        user, command = str(r["user"] or ""), str(r["command"] or "")
        if user in _NOT_CLIENTS or command in _NOT_WRITERS:
            continue
        out.append(Session(int(r["id"]), user, str(r["host"] or ""), command, int(r["t"] or 0)))
    return sorted(out, key=lambda s: s.id)


def fence_bypassing_sessions(conn: Connection[Any], dialect: Dialect,
                             trusted_user: str) -> tuple[list[Session], dict[str, str]]:
    """(sessions that can write through the fence, every bypassing user -> how).

    ``trusted_user`` (the control account) is not counted: roleswap's own and its
    monitors' sessions use it, and it must hold the bypass privilege to set read_only.
    """
    users = bypass_users(conn, dialect)
    found = [s for s in sessions(conn) if s.user in users and s.user != trusted_user]
    return found, users


def enabled_events(conn: Connection[Any]) -> list[Event]:
    """Enabled events when the event scheduler runs (else none: nothing fires)."""
    on = query(conn, "SELECT @@GLOBAL.event_scheduler AS s")
    if str(on[0]["s"]).upper() not in ("ON", "1"):
        return []
    rows = query(conn, "SELECT EVENT_SCHEMA AS s, EVENT_NAME AS n, DEFINER AS d "
                       "FROM information_schema.EVENTS WHERE STATUS = 'ENABLED'")
    return [Event(str(r["s"]), str(r["n"]), str(r["d"])) for r in rows]


def kill_sessions(conn: Connection[Any], ids: Iterable[int]) -> list[int]:
    """``KILL CONNECTION`` each id; returns those that existed.  Their open transactions
    roll back (nothing they had not committed was ever acknowledged)."""
    killed = []
    for i in ids:
        try:
            query(conn, "KILL CONNECTION %s", (int(i),))
            killed.append(int(i))
        except pymysql.MySQLError as e:
            if e.args and e.args[0] == _UNKNOWN_THREAD:
                continue  # it ended by itself meanwhile
            raise
    return killed


def wait_until_gone(conn: Connection[Any], ids: list[int], timeout: float) -> list[int]:
    """Poll until none of ``ids`` is in the processlist any more, at most ``timeout``
    seconds; returns those still there.  ``KILL`` only flags a thread: one that was
    committing finishes that commit first, and that write must land before the fenced
    primary's final position is read, not after (fence-check would see it move and roll
    the swap back).  A killed thread leaves the list once its statement has ended."""
    if not ids:
        return []
    marks = ", ".join(["%s"] * len(ids))
    sql = f"SELECT ID AS id FROM information_schema.PROCESSLIST WHERE ID IN ({marks})"
    deadline = time.monotonic() + timeout
    while True:
        left = [int(r["id"]) for r in query(conn, sql, tuple(ids))]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.001)
