"""SHOW GRANTS parsing by scope, and what the control account lacks (no server).

The MariaDB lines were printed by MariaDB 10.11.19 (this project's lab); the
MySQL lines follow the MySQL 8.0/8.4 and 5.7 manuals' SHOW GRANTS output.
"""

from __future__ import annotations

import pytest

from roleswap.mysql.grants import (
    AccountGrants,
    Scope,
    canonical,
    control_needs,
    grant_statement,
    missing_needs,
    quote_account,
)

PW = "IDENTIFIED BY PASSWORD '*2B1F184E25B3A87E7DEBE5E9473804B94C014ECD'"

# -- MariaDB 10.11.19, as printed on the lab ---------------------------------------
MARIA_LAB_CONTROL = [
    "GRANT SELECT, RELOAD, PROCESS, SUPER, REPLICATION SLAVE, BINLOG MONITOR, CONNECTION ADMIN, "
    "READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, BINLOG ADMIN, SLAVE MONITOR "
    f"ON *.* TO `roleswap`@`%` {PW}",
    "GRANT ALL PRIVILEGES ON `roleswap`.* TO `roleswap`@`%`",
]
MARIA_ALL_ON_DB_ONLY = [
    f"GRANT USAGE ON *.* TO `weak`@`%` {PW}",
    "GRANT ALL PRIVILEGES ON `roleswap`.* TO `weak`@`%`",
]
MARIA_APP = [
    f"GRANT USAGE ON *.* TO `app`@`%` {PW}",
    "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, "
    "LOCK TABLES, EXECUTE ON `app`.* TO `app`@`%`",
]
MARIA_ROOT = [
    "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
    "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION",
]
# A user with a default role (plain SHOW GRANTS then lists the active role's grants).
MARIA_ROLE_ACTIVE = [
    "GRANT `rs_role` TO `ptest`@`%`",
    f"GRANT USAGE ON *.* TO `ptest`@`%` {PW}",
    "GRANT SELECT (`id`) ON `app`.`t` TO `ptest`@`%`",
    "GRANT EXECUTE ON PROCEDURE `mysql`.`addgeometrycolumn` TO `ptest`@`%`",
    "GRANT `rs_inner` TO `rs_role`",
    "GRANT PROCESS, READ_ONLY ADMIN ON *.* TO `rs_role`",
    "GRANT BINLOG MONITOR ON *.* TO `rs_inner`",
    "SET DEFAULT ROLE `rs_role` FOR `ptest`@`%`",
]
# The same user without a default role: the role's grants are not listed (not active).
MARIA_ROLE_INACTIVE = MARIA_ROLE_ACTIVE[:4]

# -- MySQL ---------------------------------------------------------------------------
MYSQL8_CONTROL = [
    "GRANT SELECT, RELOAD, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `roleswap`@`%`",
    "GRANT BINLOG_ADMIN,CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* "
    "TO `roleswap`@`%`",
    "GRANT ALL PRIVILEGES ON `roleswap`.* TO `roleswap`@`%`",
]
MYSQL8_ROLES = [
    "GRANT USAGE ON *.* TO `u`@`%`",
    "GRANT `r1`@`%`,`r2`@`%` TO `u`@`%` WITH ADMIN OPTION",
    "REVOKE INSERT, UPDATE ON `mysql`.* FROM `u`@`%`",
]
MYSQL57_ROOT = ["GRANT ALL PRIVILEGES ON *.* TO 'root'@'localhost' WITH GRANT OPTION",
                "GRANT PROXY ON ''@'' TO 'root'@'localhost' WITH GRANT OPTION"]

MARIA_1011 = ("mariadb", (10, 11, 19))
MARIA_118 = ("mariadb", (11, 8, 9))
MYSQL84 = ("mysql", (8, 4, 3))
MYSQL57 = ("mysql", (5, 7, 44))


def lacks(lines: list[str], flavor: tuple[str, tuple[int, int, int]]) -> list[str]:
    return [n.any_of[0] for n in missing_needs(AccountGrants.parse(lines), control_needs(*flavor))]


def test_both_read_only_admin_spellings_are_one_privilege() -> None:
    assert canonical("READ ONLY ADMIN") == canonical("READ_ONLY ADMIN") == "READ ONLY ADMIN"
    assert canonical("replication_slave_admin") == "REPLICATION SLAVE ADMIN"
    assert canonical("ALL") == canonical("ALL PRIVILEGES")
    for spelling in ("READ ONLY ADMIN", "READ_ONLY ADMIN"):
        g = AccountGrants.parse([f"GRANT {spelling} ON *.* TO `x`@`%`"])
        assert g.has_global("READ ONLY ADMIN")


def test_mariadb_lab_control_account_has_everything() -> None:
    g = AccountGrants.parse(MARIA_LAB_CONTROL)
    assert [s.kind for s in (x.scope for x in g.grants)] == ["global", "database"]
    assert "READ ONLY ADMIN" in g.global_privileges()
    assert g.grants[1].scope == Scope("database", db="roleswap")
    assert g.grants[1].privileges == {"ALL PRIVILEGES"}
    assert lacks(MARIA_LAB_CONTROL, MARIA_1011) == []
    assert lacks(MARIA_LAB_CONTROL, MARIA_118) == []


def test_all_on_one_database_gives_no_global_privilege() -> None:
    g = AccountGrants.parse(MARIA_ALL_ON_DB_ONLY)
    assert g.global_privileges() == {"USAGE"}
    assert not g.has_global("READ ONLY ADMIN") and not g.has_global("SUPER")
    assert g.granted_elsewhere("READ ONLY ADMIN") == [Scope("database", db="roleswap")]
    assert lacks(MARIA_ALL_ON_DB_ONLY, MARIA_1011) == [
        "READ ONLY ADMIN", "REPLICATION SLAVE ADMIN", "RELOAD", "SLAVE MONITOR", "BINLOG MONITOR",
        "PROCESS", "CONNECTION ADMIN"]


def test_app_account_lacks_everything_global() -> None:
    g = AccountGrants.parse(MARIA_APP)
    assert g.grants[1].scope == Scope("database", db="app")
    assert "CREATE TEMPORARY TABLES" in g.grants[1].privileges
    assert "LOCK TABLES" in g.grants[1].privileges
    assert len(lacks(MARIA_APP, MARIA_1011)) == 7


def test_all_privileges_on_star_star_and_grant_option() -> None:
    g = AccountGrants.parse(MARIA_ROOT)
    assert g.grants[0].grant_option and g.grants[0].scope.kind == "global"
    assert g.grants[1].scope.kind == "proxy" and g.grants[1].privileges == {"PROXY"}
    assert lacks(MARIA_ROOT, MARIA_1011) == []
    assert lacks(MYSQL57_ROOT, MYSQL57) == []


def test_super_no_longer_sets_read_only_on_mariadb_1011() -> None:
    lines = ["GRANT SUPER, PROCESS, RELOAD ON *.* TO `s`@`%`"]
    assert lacks(lines, MARIA_1011) == ["READ ONLY ADMIN"]
    assert lacks(lines, ("mariadb", (10, 6, 18))) == []  # SUPER included it before 10.11


def test_replication_client_is_binlog_monitor_on_mariadb() -> None:
    base = ("READ ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR, PROCESS, "
            "CONNECTION ADMIN")
    for p in ("BINLOG MONITOR", "REPLICATION CLIENT"):
        assert lacks([f"GRANT {base}, {p} ON *.* TO `c`@`%`"], MARIA_1011) == []
    assert lacks([f"GRANT {base} ON *.* TO `c`@`%`"], MARIA_1011) == ["BINLOG MONITOR"]


def test_column_table_and_routine_scopes() -> None:
    g = AccountGrants.parse(MARIA_ROLE_INACTIVE)
    col = g.grants[1]
    assert col.scope == Scope("table", db="app", name="t")
    assert col.privileges == frozenset() and col.column_privileges == {"SELECT"}
    assert not col.gives("SELECT")
    proc = g.grants[2]
    assert proc.scope == Scope("routine", db="mysql", name="addgeometrycolumn", routine="PROCEDURE")
    assert str(proc.scope) == "PROCEDURE `mysql`.`addgeometrycolumn`"
    tbl = AccountGrants.parse(["GRANT SELECT, INSERT ON TABLE `d`.`t``x` TO 'u'@'h'"]).grants[0]
    assert tbl.scope == Scope("table", db="d", name="t`x") and tbl.grantee == "u@h"
    pkg = AccountGrants.parse(["GRANT EXECUTE ON PACKAGE BODY `d`.`p` TO `u`@`%`"]).grants[0]
    assert pkg.scope.routine == "PACKAGE BODY"


def test_mariadb_active_role_counts_inactive_role_does_not() -> None:
    active = AccountGrants.parse(MARIA_ROLE_ACTIVE)
    assert active.role_names() == ("rs_role", "rs_inner")
    assert active.default_roles == ("rs_role",)
    assert active.inactive_roles() == ()
    assert active.has_global("READ ONLY ADMIN") and active.has_global("BINLOG MONITOR")
    inactive = AccountGrants.parse(MARIA_ROLE_INACTIVE)
    assert inactive.inactive_roles() == ("rs_role",)
    assert not inactive.has_global("READ ONLY ADMIN")
    assert "READ ONLY ADMIN" in lacks(MARIA_ROLE_INACTIVE, MARIA_1011)


def test_mysql8_dynamic_privileges_comma_packed() -> None:
    g = AccountGrants.parse(MYSQL8_CONTROL)
    assert {"BINLOG ADMIN", "CONNECTION ADMIN", "REPLICATION SLAVE ADMIN",
            "SYSTEM VARIABLES ADMIN"} <= g.global_privileges()
    assert lacks(MYSQL8_CONTROL, MYSQL84) == []
    without = [MYSQL8_CONTROL[0], MYSQL8_CONTROL[2]]
    assert lacks(without, MYSQL84) == ["SYSTEM_VARIABLES_ADMIN", "REPLICATION_SLAVE_ADMIN"]
    # RELOAD: granted in line 0; no kill privilege: super_read_only leaves nothing to kill


def test_mysql_needs_no_privilege_to_kill_sessions() -> None:
    """Nothing writes through super_read_only, so --kill-privileged never kills on MySQL:
    the control account is not asked for CONNECTION_ADMIN (or SUPER) for it."""
    for flavor, version in (MYSQL57, MYSQL84, ("mysql", (9, 7, 4))):
        assert not [n for n in control_needs(flavor, version) if "kill" in n.what]
    assert [n.any_of for n in control_needs(*MARIA_1011) if "kill" in n.what] == [
        ("CONNECTION ADMIN", "SUPER")]


def test_mysql_role_grants_and_partial_revokes() -> None:
    g = AccountGrants.parse(MYSQL8_ROLES)
    assert g.roles[0].roles == ("r1@%", "r2@%") and g.roles[0].admin_option
    assert g.roles[0].grantee == "u@%"
    assert g.unparsed == 1  # the REVOKE line
    assert g.role_names() == ("r1@%", "r2@%")


def test_mysql57_needs_super() -> None:
    lines = ["GRANT PROCESS, RELOAD, REPLICATION CLIENT ON *.* TO 'c'@'%'"]
    assert lacks(lines, MYSQL57) == ["SUPER", "SUPER"]  # read_only, replication
    needs = missing_needs(AccountGrants.parse(lines), control_needs(*MYSQL57))
    assert grant_statement(needs, "c@%") == "GRANT SUPER ON *.* TO `c`@`%`"


@pytest.mark.parametrize(("account", "quoted"), [
    ("roleswap@%", "`roleswap`@`%`"),
    ("we`ird@10.0.0.%", "`we``ird`@`10.0.0.%`"),
    ("a@b@c", "`a@b`@`c`"),
])
def test_quote_account(account: str, quoted: str) -> None:
    assert quote_account(account) == quoted


def test_grant_statement_names_each_privilege_once() -> None:
    needs = missing_needs(AccountGrants.parse(MARIA_ALL_ON_DB_ONLY), control_needs(*MARIA_1011))
    assert grant_statement(needs, "weak@%") == (
        "GRANT READ ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR, BINLOG MONITOR, "
        "PROCESS, CONNECTION ADMIN ON *.* TO `weak`@`%`")
    needs57 = missing_needs(AccountGrants.parse([]), control_needs(*MYSQL57))
    assert grant_statement(needs57, "c@%") == (
        "GRANT SUPER, RELOAD, REPLICATION CLIENT, PROCESS ON *.* TO `c`@`%`")


def test_password_hash_is_not_kept() -> None:
    g = AccountGrants.parse(MARIA_LAB_CONTROL)
    assert "2B1F184E" not in repr(g)
