"""SHOW GRANTS, parsed by scope, and what the control account needs per flavor.

:meth:`AccountGrants.parse` turns the lines of ``SHOW GRANTS`` into
:class:`Grant` values (privileges + :class:`Scope` + WITH GRANT OPTION) and
:class:`RoleGrant` values (``GRANT role TO user``), for MariaDB and MySQL
alike: backtick, single- or double-quoted identifiers, column privileges
(``SELECT (`id`)``), routine scopes (``ON PROCEDURE db.p``), ``ALL
[PRIVILEGES]``, MySQL's comma-packed dynamic privileges, and both spellings
MariaDB uses for one privilege (``READ ONLY ADMIN`` / ``READ_ONLY ADMIN``).

A global privilege counts only when it is granted ON ``*.*``: ``GRANT ALL ON
roleswap.*`` gives no READ ONLY ADMIN.  Privileges reach a session through a
role only while the role is active.  MariaDB's plain ``SHOW GRANTS`` lists the
grants of the session's active role (the default role, recursively), so those
are counted, and :meth:`AccountGrants.inactive_roles` names granted roles
that are not active.  MySQL's SHOW GRANTS never expands roles: privileges
held through roles are not checked there (callers say so).

The requirement tables (:func:`control_needs`) were measured on MariaDB
10.11.19, one privilege at a time; the MySQL ones follow the MySQL 8.0/8.4/9.x
manuals.  Nothing here prints a grant line: they can carry password hashes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["AccountGrants", "Grant", "Need", "RoleGrant", "Scope", "canonical", "control_needs",
           "grant_statement", "missing_needs", "quote_account"]

# Other spellings of the same privilege (after canonical()).
_ALIASES = {
    "ALL": "ALL PRIVILEGES",
    "REPLICATION REPLICA": "REPLICATION SLAVE",
    "REPLICA MONITOR": "SLAVE MONITOR",
    "REPLICATION REPLICA ADMIN": "REPLICATION SLAVE ADMIN",
}


def canonical(privilege: str) -> str:
    """One spelling per privilege: upper case, ``_`` as space, aliases resolved.

    ``READ_ONLY ADMIN`` (MariaDB 11.8 and late 10.11) and ``READ ONLY ADMIN`` (the
    grammar) are one privilege; so are MySQL's ``REPLICATION_SLAVE_ADMIN`` and
    MariaDB's ``REPLICATION SLAVE ADMIN``.
    """
    name = " ".join(privilege.upper().replace("_", " ").split())
    return _ALIASES.get(name, name)


ALL = "ALL PRIVILEGES"


# -- tokens ------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<bq>`(?:[^`]|``)*`)
      | (?P<sq>'(?:[^'\\]|\\.|'')*')
      | (?P<dq>"(?:[^"\\]|\\.|"")*")
      | (?P<word>[A-Za-z0-9_$]+)
      | (?P<punct>[,().*@=;])
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "ident" (quoted), "word", "punct", "other"
    text: str  # unquoted for identifiers and strings

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _unquote(text: str) -> str:
    q = text[0]
    body = text[1:-1]
    if q == "`":
        return body.replace("``", "`")
    return re.sub(r"\\(.)", r"\1", body.replace(q * 2, q))


def _tokens(line: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(line):
        kind = m.lastgroup or "other"
        text = m.group(kind)
        if kind in ("bq", "sq", "dq"):
            out.append(_Tok("ident", _unquote(text)))
        else:
            out.append(_Tok(kind, text))
    return out


def _split_top(toks: Sequence[_Tok], sep: str = ",") -> list[list[_Tok]]:
    """Split at ``sep`` outside parentheses."""
    parts: list[list[_Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "punct" and t.text == "(":
            depth += 1
        elif t.kind == "punct" and t.text == ")":
            depth -= 1
        if depth == 0 and t.kind == "punct" and t.text == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def _find_top_word(toks: Sequence[_Tok], word: str, start: int = 0) -> int:
    depth = 0
    for i in range(start, len(toks)):
        t = toks[i]
        if t.kind == "punct" and t.text == "(":
            depth += 1
        elif t.kind == "punct" and t.text == ")":
            depth -= 1
        elif depth == 0 and t.is_word(word):
            return i
    return -1


# -- values ------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """What a grant applies to: ``global`` (``*.*``), ``database`` (``db.*``),
    ``table`` (``db.t``), ``routine`` (``PROCEDURE db.p`` ...), ``proxy`` (an account)."""

    kind: str
    db: str | None = None
    name: str | None = None
    routine: str | None = None  # PROCEDURE, FUNCTION, PACKAGE, PACKAGE BODY

    def __str__(self) -> str:
        if self.kind == "global":
            return "*.*"
        if self.kind == "database":
            return f"{_q(self.db or '')}.*"
        if self.kind == "proxy":
            return f"PROXY {self.name}"
        obj = f"{_q(self.db or '')}.{_q(self.name or '')}"
        return f"{self.routine} {obj}" if self.routine else obj


@dataclass(frozen=True)
class Grant:
    """One ``GRANT privileges ON scope TO grantee`` line.

    ``privileges`` are canonical names (:func:`canonical`) granted on the whole
    scope; ``column_privileges`` those granted only on some columns (they never
    satisfy a table-, database- or global-level need).
    """

    privileges: frozenset[str]
    scope: Scope
    grantee: str
    grant_option: bool = False
    column_privileges: frozenset[str] = frozenset()

    def gives(self, privilege: str) -> bool:
        """True if this grant holds ``privilege`` on its whole scope (ALL included)."""
        return canonical(privilege) in self.privileges or ALL in self.privileges


@dataclass(frozen=True)
class RoleGrant:
    """One ``GRANT role[, role] TO grantee [WITH ADMIN OPTION]`` line."""

    roles: tuple[str, ...]
    grantee: str
    admin_option: bool = False


def _ident(toks: Sequence[_Tok]) -> str:
    """``name`` or ``name@host`` from identifier tokens."""
    return "".join(t.text for t in toks)


@dataclass(frozen=True)
class AccountGrants:
    """Every line of one account's SHOW GRANTS, parsed.

    ``unparsed`` counts lines that are neither a GRANT nor SET DEFAULT ROLE
    (MySQL partial REVOKEs, future syntax); their text is not kept.
    """

    grants: tuple[Grant, ...] = ()
    roles: tuple[RoleGrant, ...] = ()
    default_roles: tuple[str, ...] = ()
    unparsed: int = 0

    @classmethod
    def parse(cls, lines: Iterable[str]) -> AccountGrants:
        grants: list[Grant] = []
        roles: list[RoleGrant] = []
        defaults: list[str] = []
        unparsed = 0
        for line in lines:
            toks = _tokens(line)
            if toks and toks[0].is_word("GRANT"):
                parsed = _parse_grant(toks)
                if isinstance(parsed, Grant):
                    grants.append(parsed)
                elif isinstance(parsed, RoleGrant):
                    roles.append(parsed)
                else:
                    unparsed += 1
            elif len(toks) > 3 and toks[0].is_word("SET") and toks[1].is_word("DEFAULT") \
                    and toks[2].is_word("ROLE"):
                end = _find_top_word(toks, "FOR")
                names = toks[3:end if end >= 0 else len(toks)]
                defaults += [_ident(p) for p in _split_top(names) if not p[0].is_word("NONE")]
            else:
                unparsed += 1
        return cls(tuple(grants), tuple(roles), tuple(defaults), unparsed)

    # -- questions ---------------------------------------------------------------
    def global_privileges(self) -> frozenset[str]:
        """Canonical privileges granted ON *.* (to the account or an active role)."""
        out: set[str] = set()
        for g in self.grants:
            if g.scope.kind == "global":
                out |= g.privileges
        return frozenset(out)

    def has_global(self, privilege: str) -> bool:
        """``privilege`` granted ON *.*, directly or through ALL PRIVILEGES ON *.*."""
        return any(g.scope.kind == "global" and g.gives(privilege) for g in self.grants)

    def granted_elsewhere(self, privilege: str) -> list[Scope]:
        """Narrower scopes holding ``privilege`` (or ALL): they do not give a global one."""
        return [g.scope for g in self.grants
                if g.scope.kind not in ("global", "proxy") and g.gives(privilege)]

    def role_names(self) -> tuple[str, ...]:
        """Every role granted to the account (or to one of its roles)."""
        seen: list[str] = []
        for r in self.roles:
            seen += [x for x in r.roles if x not in seen]
        return tuple(seen)

    def inactive_roles(self) -> tuple[str, ...]:
        """MariaDB: granted roles whose privileges are not in the output (not active)."""
        active = {g.grantee for g in self.grants} | {r.grantee for r in self.roles}
        active |= set(self.default_roles)
        return tuple(r for r in self.role_names() if r not in active)


def _parse_grant(toks: list[_Tok]) -> Grant | RoleGrant | None:
    to = _find_top_word(toks, "TO", 1)
    if to < 0:
        return None
    on = _find_top_word(toks, "ON", 1)
    tail = toks[to + 1:]
    stop = next((i for i, t in enumerate(tail) if t.is_word("IDENTIFIED", "REQUIRE", "WITH", "USING",
                                                             "PASSWORD", "AS")), len(tail))
    grantee = _ident(tail[:stop])
    opts = [t.text.upper() for t in tail[stop:] if t.kind == "word"]
    if on < 0 or on > to:
        names = tuple(_ident(p) for p in _split_top(toks[1:to]))
        return RoleGrant(names, grantee, admin_option=_has_seq(opts, "ADMIN", "OPTION"))
    privs: set[str] = set()
    cols: set[str] = set()
    for part in _split_top(toks[1:on]):
        words = [t.text for t in part if t.kind == "word"]
        if not words:
            continue
        name = canonical(" ".join(words))
        (cols if any(t.kind == "punct" and t.text == "(" for t in part) else privs).add(name)
    scope = _parse_scope(toks[on + 1:to], privs)
    if scope is None:
        return None
    return Grant(frozenset(privs), scope, grantee,
                 grant_option=_has_seq(opts, "GRANT", "OPTION"), column_privileges=frozenset(cols))


def _has_seq(words: list[str], a: str, b: str) -> bool:
    return any(words[i] == a and words[i + 1] == b for i in range(len(words) - 1))


_ROUTINES = ("PROCEDURE", "FUNCTION", "PACKAGE")


def _parse_scope(toks: list[_Tok], privs: set[str]) -> Scope | None:
    if "PROXY" in privs:
        return Scope("proxy", name=_ident(toks))
    routine = None
    if toks and toks[0].is_word("TABLE"):
        toks = toks[1:]
    elif toks and toks[0].is_word(*_ROUTINES):
        routine = toks[0].text.upper()
        toks = toks[1:]
        if routine == "PACKAGE" and toks and toks[0].is_word("BODY"):
            routine, toks = "PACKAGE BODY", toks[1:]
    parts = _split_top(toks, ".")
    if len(parts) != 2 or len(parts[0]) != 1 or len(parts[1]) != 1:
        return None
    db, obj = parts[0][0], parts[1][0]
    star_db, star_obj = db.text == "*" and db.kind != "ident", obj.text == "*" and obj.kind != "ident"
    if star_db and star_obj:
        return Scope("global")
    if star_obj:
        return Scope("database", db=db.text)
    if routine:
        return Scope("routine", db=db.text, name=obj.text, routine=routine)
    return Scope("table", db=db.text, name=obj.text)


# -- what the control account needs ---------------------------------------------------
@dataclass(frozen=True)
class Need:
    """One thing roleswap does, and the global privileges any one of which allows it.
    ``any_of[0]`` is the one to grant (spelled as the flavor's GRANT accepts it)."""

    what: str
    any_of: tuple[str, ...]

    def met_by(self, grants: AccountGrants) -> bool:
        return any(grants.has_global(p) for p in self.any_of)


def control_needs(flavor: str, version: tuple[int, int, int]) -> tuple[Need, ...]:
    """What the control account must hold ON *.* on a server of ``flavor``/``version``.

    MariaDB (measured on 10.11.19, each privilege alone): SET GLOBAL read_only
    needs READ ONLY ADMIN (SUPER included it before 10.11); STOP/CHANGE/START
    SLAVE need REPLICATION SLAVE ADMIN or SUPER, and RESET SLAVE ALL also needs
    RELOAD (found by swapping with exactly this list); SHOW ALL SLAVES STATUS needs
    SLAVE MONITOR or SUPER (REPLICATION SLAVE ADMIN does not give it); SHOW
    MASTER STATUS needs BINLOG MONITOR (REPLICATION CLIENT is its alias) or
    SUPER; other users' sessions and INNODB_TRX need PROCESS; KILL of other
    users' sessions needs CONNECTION ADMIN or SUPER.
    MySQL 8.0+ (measured on 9.7.4 by a whole swap with exactly this list):
    SYSTEM_VARIABLES_ADMIN or SUPER for (super_)read_only and SET/RESET PERSIST,
    REPLICATION_SLAVE_ADMIN or SUPER for replication control, REPLICATION
    CLIENT or SUPER for SHOW REPLICA/BINARY LOG STATUS, RELOAD for RESET
    REPLICA, PROCESS.  No privilege to kill sessions: the fence there is
    super_read_only, which stops every account, so ``--kill-privileged`` has
    nothing to kill.  MySQL 5.7 has no dynamic privileges: SUPER.  BINLOG_ADMIN
    is not needed: roleswap never purges or resets binary logs.
    """
    sessions = Need("see all sessions and transactions", ("PROCESS",))
    reset = Need("forget the new primary's source (RESET SLAVE/REPLICA ALL)", ("RELOAD",))
    if flavor == "mariadb":
        ro = ("READ ONLY ADMIN",) if version >= (10, 11, 0) else ("READ ONLY ADMIN", "SUPER")
        return (
            Need("set read_only", ro),
            Need("control replication", ("REPLICATION SLAVE ADMIN", "SUPER")),
            reset,
            Need("read replica status", ("SLAVE MONITOR", "SUPER")),
            Need("read the binlog position", ("BINLOG MONITOR", "REPLICATION CLIENT", "SUPER")),
            sessions,
            Need("kill sessions", ("CONNECTION ADMIN", "SUPER")),
        )
    if version >= (8, 0, 0):
        return (
            Need("set super_read_only", ("SYSTEM_VARIABLES_ADMIN", "SUPER")),
            Need("control replication", ("REPLICATION_SLAVE_ADMIN", "SUPER")),
            reset,
            Need("read replica and binlog status", ("REPLICATION CLIENT", "SUPER")),
            sessions,
        )
    return (
        Need("set super_read_only", ("SUPER",)),
        Need("control replication", ("SUPER",)),
        reset,
        Need("read replica and binlog status", ("REPLICATION CLIENT", "SUPER")),
        sessions,
    )


def missing_needs(grants: AccountGrants, needs: Iterable[Need]) -> list[Need]:
    return [n for n in needs if not n.met_by(grants)]


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_account(account: str) -> str:
    """``user@host`` (as CURRENT_USER() returns it) as `user`@`host`."""
    user, sep, host = account.rpartition("@")
    if not sep:
        return _q(account)
    return f"{_q(user)}@{_q(host)}"


def grant_statement(needs: Iterable[Need], account: str) -> str:
    """The GRANT that gives ``account`` every missing need (the preferred privilege each)."""
    privs: list[str] = []
    for n in needs:
        if n.any_of[0] not in privs:
            privs.append(n.any_of[0])
    return f"GRANT {', '.join(privs)} ON *.* TO {quote_account(account)}"
