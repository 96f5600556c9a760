"""Preflight, activity part: long transactions on --from, and what would make the
fence wait.

``SET GLOBAL read_only=1`` (the fence) waits for running DDL (ALTER, CREATE
INDEX, OPTIMIZE ...), for LOCK TABLES ... WRITE holders, and it queues behind
sessions already waiting for a metadata lock.  The fence bounds that wait with
``lock_wait_timeout`` (--fence-timeout): then it gives up, the server stays
writable and the swap rolls back, but requests are held the whole time.  So:

* a transaction or statement older than --long-trx: FAIL (as before);
* each such blocker: WARN naming the thread id, user, kind (first keyword(s)
  and table name: never a statement's values) and age;
* a blocker older than --long-trx: FAIL.  The same bound as for long
  transactions, for the same reason: what has run that long is unlikely to end
  inside the fence's few seconds, so the swap would only hold requests for
  --fence-timeout and roll back.

LOCK TABLES holders run no statement, so PROCESSLIST does not show them.  They
are named from ``performance_schema.metadata_locks`` (MySQL's default) or
MariaDB's ``information_schema.METADATA_LOCK_INFO`` plugin when either is
available.  Otherwise (MariaDB's default) a table that ``SHOW OPEN TABLES``
reports in use, twice, with no running statement naming it, is reported by
table only, and the warning says why the thread cannot be named.  Everything
here reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from roleswap.errors import RoleSwapError
from roleswap.mysql.topology import Server
from roleswap.swap.check import Check
from roleswap.swap.context import SwapContext

__all__ = ["Blocker", "activity_checks", "lock_blockers", "statement_kind"]

# Client sessions only: no replication or server threads, not this session.
_PROCESSLIST_SQL = (
    "SELECT ID AS id, USER AS user, COMMAND AS command, TIME AS age, STATE AS state,"
    " LEFT(INFO, 300) AS info FROM information_schema.PROCESSLIST"
    " WHERE ID <> CONNECTION_ID()"
    " AND COMMAND NOT IN ('Daemon', 'Killed', 'Binlog Dump', 'Binlog Dump GTID',"
    " 'Slave_IO', 'Slave_SQL', 'Slave_worker')"
    " AND USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user')"
)
_PS_ENABLED_SQL = (
    "SELECT ENABLED AS e FROM performance_schema.setup_instruments"
    " WHERE NAME = 'wait/lock/metadata/sql/mdl'"
)
# LOCK TABLES ... WRITE takes SHARED_NO_READ_WRITE on each table (READ takes
# SHARED_READ_ONLY, which does not stop read_only).
_PS_HOLDERS_SQL = (
    "SELECT t.PROCESSLIST_ID AS id, m.OBJECT_SCHEMA AS db, m.OBJECT_NAME AS tbl, NULL AS ms"
    " FROM performance_schema.metadata_locks m"
    " JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID"
    " WHERE m.OBJECT_TYPE = 'TABLE' AND m.LOCK_TYPE = 'SHARED_NO_READ_WRITE'"
    " AND m.LOCK_STATUS = 'GRANTED'"
)
_MLI_ACTIVE_SQL = (
    "SELECT PLUGIN_STATUS AS s FROM information_schema.PLUGINS"
    " WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'"
)
_MLI_HOLDERS_SQL = (
    "SELECT THREAD_ID AS id, TABLE_SCHEMA AS db, TABLE_NAME AS tbl, LOCK_TIME_MS AS ms"
    " FROM information_schema.METADATA_LOCK_INFO"
    " WHERE LOCK_MODE = 'MDL_SHARED_NO_READ_WRITE' AND TABLE_NAME <> ''"
)
_OPEN_TABLES_SQL = "SHOW OPEN TABLES WHERE In_use > 0"

_DDL = ("ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE", "OPTIMIZE", "REPAIR", "ANALYZE")


# -- statement kinds (never values) -------------------------------------------------------
_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_TABLE = rf"(?P<t>{_NAME}(?:\s*\.\s*{_NAME})?)"
_KINDS = tuple((re.compile(p, re.IGNORECASE | re.DOTALL), label) for p, label in (
    (rf"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?{_TABLE}", "ALTER TABLE"),
    (rf"CREATE\s+(?:OR\s+REPLACE\s+)?(?:ONLINE\s+)?(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+"
     rf"(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}\s+(?:USING\s+\w+\s+)?ON\s+{_TABLE}", "CREATE INDEX ON"),
    (rf"DROP\s+(?:ONLINE\s+)?INDEX\s+(?:IF\s+EXISTS\s+)?{_NAME}\s+ON\s+{_TABLE}", "DROP INDEX ON"),
    (rf"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_TABLE}",
     "CREATE TABLE"),
    (rf"DROP\s+(?:TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?{_TABLE}", "DROP TABLE"),
    (rf"RENAME\s+TABLES?\s+{_TABLE}", "RENAME TABLE"),
    (rf"TRUNCATE\s+(?:TABLE\s+)?{_TABLE}", "TRUNCATE TABLE"),
    (rf"(?P<k>OPTIMIZE|REPAIR|ANALYZE|CHECK)\s+(?:NO_WRITE_TO_BINLOG\s+|LOCAL\s+)?TABLES?\s+{_TABLE}",
     ""),
    (r"LOCK\s+TABLES?\b", "LOCK TABLES"),
    (r"FLUSH\s+TABLES?\b", "FLUSH TABLES"),
    (rf"(?:INSERT|REPLACE)\s+(?:LOW_PRIORITY\s+|DELAYED\s+|HIGH_PRIORITY\s+|IGNORE\s+)*"
     rf"(?:INTO\s+)?{_TABLE}", "INSERT INTO"),
    (rf"UPDATE\s+(?:LOW_PRIORITY\s+)?(?:IGNORE\s+)?{_TABLE}", "UPDATE"),
    (rf"DELETE\s+(?:LOW_PRIORITY\s+|QUICK\s+|IGNORE\s+)*FROM\s+{_TABLE}", "DELETE FROM"),
))
_LEADING = re.compile(r"^(?:\s+|/\*.*?\*/|--[^\n]*\n|#[^\n]*\n)*", re.DOTALL)


def _table(text: str) -> str:
    return ".".join(p.strip().strip("`").replace("``", "`") for p in text.split("."))


def statement_kind(info: str | None) -> str:
    """The first keyword(s) of a statement and, where they name one, its table:
    ``ALTER TABLE app.t``, ``CREATE INDEX ON app.t``, ``INSERT INTO app.t``,
    ``SELECT``.  Never any value of the statement (it may hold personal data)."""
    if not info:
        return "?"
    text = _LEADING.sub("", info, count=1)
    for rx, label in _KINDS:
        m = rx.match(text)
        if m:
            kind = label or f"{m.group('k').upper()} TABLE"
            t = m.groupdict().get("t")
            return f"{kind} {_table(t)}" if t else kind
    word = re.match(r"[A-Za-z]+", text)
    return word.group(0).upper() if word else "?"


# -- blockers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blocker:
    """A session that would make the fence wait.  ``thread_id`` is None when only
    the table is known (a LOCK TABLES holder without lock instrumentation)."""

    thread_id: int | None
    user: str | None
    kind: str  # statement_kind(), or "LOCK TABLES ... WRITE on db.t"
    doing: str  # "running", "waiting for table metadata lock", "held"
    age_s: int | None

    def __str__(self) -> str:
        who = (f"thread {self.thread_id} (user {self.user})" if self.thread_id is not None
               else "a session running no statement")
        age = f" ({self.age_s}s)" if self.age_s is not None else ""
        return f"{who}: {' '.join(x for x in (self.kind, self.doing) if x)}{age}"


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return "" if v is None else str(v)


def _int(v: Any) -> int:
    return int(v) if v is not None and v != "" else 0


def _waiting(state: str) -> bool:
    s = state.lower()
    return s.startswith("waiting for") and ("lock" in s or "flush" in s)


def _from_processlist(rows: Sequence[Mapping[str, Any]]) -> list[Blocker]:
    """Running DDL and sessions waiting for a metadata/table lock or a flush."""
    out = []
    for r in rows:
        command, state = _text(r.get("command")), _text(r.get("state"))
        if command not in ("Query", "Execute"):
            continue
        kind = statement_kind(_text(r.get("info")))
        if _waiting(state):
            doing = state[0].lower() + state[1:]
        elif kind.split(" ", 1)[0] in _DDL:
            doing = "running"
        else:
            continue
        out.append(Blocker(_int(r.get("id")), _text(r.get("user")), kind, doing, _int(r.get("age"))))
    return out


def _holders(rows: Sequence[Mapping[str, Any]], sessions: Mapping[int, Mapping[str, Any]],
             reported: set[int]) -> list[Blocker]:
    """LOCK TABLES ... WRITE holders (from lock instrumentation), one line per thread."""
    tables: dict[int, list[str]] = {}
    ages: dict[int, int | None] = {}
    for r in rows:
        tid = _int(r.get("id"))
        if tid in reported or tid not in sessions:
            continue  # running DDL already reported, or a thread that is not a client session
        tables.setdefault(tid, []).append(f"{_text(r.get('db'))}.{_text(r.get('tbl'))}")
        ms = r.get("ms")
        ages[tid] = (int(ms) // 1000 if ms is not None
                     else _int(sessions[tid].get("age")))
    return [Blocker(tid, _text(sessions[tid].get("user")),
                    f"LOCK TABLES ... WRITE on {', '.join(sorted(set(tbls)))}", "held", ages[tid])
            for tid, tbls in tables.items()]


def _unattributed(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]],
                  sessions: Sequence[Mapping[str, Any]]) -> list[Blocker]:
    """Tables in use in both SHOW OPEN TABLES reads that no running statement names:
    most likely held by LOCK TABLES in an idle session (owner unknown)."""
    def tables(rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
        return {(_text(r.get("Database")), _text(r.get("Table"))) for r in rows}

    texts = [_text(s.get("info")) for s in sessions if _text(s.get("command")) not in ("Sleep", "")]
    out = []
    for db, tbl in sorted(tables(first) & tables(second)):
        # the table where a statement names one: after FROM, JOIN, INTO, UPDATE, TABLE(S), ON or ","
        named = re.compile(rf"(?:\bFROM|\bJOIN|\bINTO|\bUPDATE|\bTABLES?|\bON|,)\s+"
                           rf"(?:`?{re.escape(db)}`?\s*\.\s*)?`?{re.escape(tbl)}`?(?![\w$])",
                           re.IGNORECASE)
        if any(named.search(t) for t in texts):
            continue
        out.append(Blocker(None, None, f"holds {db}.{tbl} (probably LOCK TABLES)", "", None))
    return out


def _first(ctx: SwapContext, name: str, sql: str) -> str:
    try:
        rows = ctx.query(name, sql)
    except RoleSwapError:
        return ""
    return _text(next(iter(rows[0].values()))) if rows else ""


def lock_blockers(ctx: SwapContext, name: str) -> tuple[list[Blocker], str]:
    """Everything on ``name`` the fence would wait for, and how LOCK TABLES holders
    were found: "performance_schema", "metadata_lock_info" or "open tables"."""
    if _first(ctx, name, _PS_ENABLED_SQL).upper() == "YES":
        source, holders_sql = "performance_schema", _PS_HOLDERS_SQL
    elif _first(ctx, name, _MLI_ACTIVE_SQL).upper() == "ACTIVE":
        source, holders_sql = "metadata_lock_info", _MLI_HOLDERS_SQL
    else:
        source, holders_sql = "open tables", ""
    holder_rows: list[dict[str, Any]] = []
    if holders_sql:
        try:
            holder_rows = ctx.query(name, holders_sql)
        except RoleSwapError:  # e.g. no SELECT on performance_schema: by table, then
            source, holders_sql = "open tables", ""
    open_1 = [] if holders_sql else ctx.query(name, _OPEN_TABLES_SQL)
    sessions = ctx.query(name, _PROCESSLIST_SQL)
    blockers = _from_processlist(sessions)
    if holders_sql:
        by_id = {_int(s.get("id")): s for s in sessions}
        blockers += _holders(holder_rows, by_id,
                             {b.thread_id for b in blockers if b.thread_id is not None})
    elif open_1:
        blockers += _unattributed(open_1, ctx.query(name, _OPEN_TABLES_SQL), sessions)
    return blockers, source


# -- checks -----------------------------------------------------------------------------------
def activity_checks(ctx: SwapContext, s: Server) -> list[Check]:
    """long-trx, then locks: both about --from only (the server the fence blocks)."""
    return [_long_trx(ctx, s), _locks(ctx, s)]


def _long_trx(ctx: SwapContext, s: Server) -> Check:
    limit = ctx.opts.long_trx
    for label, act in (("transaction", s.longest_trx), ("statement", s.longest_statement)):
        if act is not None and act.age_s > limit:
            return Check.fail("long-trx", f"a {label} on {s.name} has run {act.age_s}s "
                              f"(thread {act.thread_id}, user {act.user}; limit {limit:g}s)",
                              "wait for it, kill it, or raise --long-trx")
    return Check.ok("long-trx", f"no transaction on {s.name} older than {limit:g}s")


def _locks(ctx: SwapContext, s: Server) -> Check:
    limit, fence = ctx.opts.long_trx, ctx.opts.fence_timeout
    try:
        blockers, source = lock_blockers(ctx, s.name)
    except RoleSwapError as e:
        return Check.warn("locks", f"could not list DDL and lock holders on {s.name}: {e.message}",
                          "grant the control account PROCESS (see the privileges check)")
    if not blockers:
        how = ("" if source != "open tables" else
               " (LOCK TABLES holders seen by table only: no lock instrumentation)")
        return Check.ok("locks", f"no running DDL, LOCK TABLES or metadata-lock wait on {s.name}"
                        + how)
    listed = "; ".join(str(b) for b in blockers[:5])
    more = f" (+{len(blockers) - 5} more)" if len(blockers) > 5 else ""
    old = [b for b in blockers if b.age_s is not None and b.age_s > limit]
    unnamed = any(b.thread_id is None for b in blockers)
    find = (" To name an unknown holder: SHOW PROCESSLIST (an idle session of the user who "
            "locked it), or INSTALL SONAME 'metadata_lock_info'." if unnamed else "")
    if old:
        ids = ", ".join(str(b.thread_id) for b in old)
        return Check.fail("locks", f"on {s.name}: {listed}{more}; thread(s) {ids} older than "
                          f"--long-trx ({limit:g}s) are unlikely to end within the fence's {fence}s",
                          f"wait for it to finish, or end it (KILL {ids}: its work is rolled "
                          "back), or raise --long-trx")
    return Check.warn("locks", f"on {s.name}: {listed}{more}",
                      f"the fence (SET GLOBAL read_only) waits for these up to --fence-timeout "
                      f"({fence}s) with requests held, then rolls the swap back safely; let them "
                      "finish, or end them, before swapping." + find)
