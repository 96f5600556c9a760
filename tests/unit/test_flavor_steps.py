"""Swap steps and checks on either flavor, against a scripted context: positions are
canonical and compared by value, the not-replicating wait result is named, MySQL's
super_read_only leaves --kill-privileged nothing to do, remedies speak the server's SQL."""

from __future__ import annotations

from typing import Any, cast

import pytest

from roleswap.errors import StepError
from roleswap.mysql.dialect import MARIADB, MYSQL84, Dialect, ReplicaStatus
from roleswap.mysql.topology import Server, Topology
from roleswap.status import dangers, sql_hints
from roleswap.swap.context import SwapContext, SwapOptions
from roleswap.swap.divergence import extra_transactions
from roleswap.swap.positions import fmt, read_gtid, same
from roleswap.swap.steps_db import PreSync, _received
from roleswap.swap.steps_fence import CatchUp, Fence, FenceCheck
from roleswap.swap.writers import writer_checks
from tests.unit.fakectx import FakeCtx

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-82db-22f2-af44-d91bb0530673"
MULTILINE = f"{U2}:1-3,\n{U1}:1-5"
CANONICAL = f"{U1}:1-5,{U2}:1-3"
EXECUTED = "SELECT @@GLOBAL.gtid_executed AS g"
MYSQL_WAIT = "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"


def fake(d: Dialect = MYSQL84, **kw: Any) -> FakeCtx:
    return FakeCtx({"db1": d, "db2": d, "db3": d}, **kw)


def as_ctx(f: FakeCtx) -> SwapContext:
    return cast(SwapContext, f)


# -- positions ------------------------------------------------------------------------

def test_read_gtid_mysql_is_canonical_one_line() -> None:
    f = fake(answers={("db1", EXECUTED): [{"g": MULTILINE}]})
    assert read_gtid(as_ctx(f), "db1") == {"gtid": CANONICAL}


def test_read_gtid_mariadb_reads_gtid_binlog_pos_canonical() -> None:
    f = fake(MARIADB, answers={("db1", "SELECT @@GLOBAL.gtid_binlog_pos AS g"): [{"g": "1-2-5,0-1-9"}]})
    assert read_gtid(as_ctx(f), "db1") == {"gtid": "0-1-9,1-2-5"}


def test_positions_compare_by_value_and_print_on_one_line() -> None:
    assert same({"gtid": MULTILINE}, {"gtid": CANONICAL})
    assert not same({"gtid": CANONICAL}, {"gtid": f"{U1}:1-6,{U2}:1-3"})
    assert same({"file": "b.1", "pos": "4"}, {"file": "b.1", "pos": 4})
    assert not same({"file": "b.1", "pos": 4}, None) and same(None, None)
    assert fmt({"gtid": MULTILINE}) == CANONICAL
    assert fmt({"gtid": ""}) == "(empty)"


def test_catch_up_records_the_canonical_final_position() -> None:
    f = fake(answers={("db1", EXECUTED): [{"g": MULTILINE}], ("db2", MYSQL_WAIT): [{"w": 0}]})
    detail = CatchUp().apply(as_ctx(f))
    assert detail == CANONICAL
    assert f.state["final_position"] == {"gtid": CANONICAL}
    assert [p[0] for n, sql, p in f.log if sql == MYSQL_WAIT] == [CANONICAL]


def test_fence_check_accepts_the_same_position_in_another_spelling() -> None:
    # a journal written before positions were canonical holds MySQL's raw text
    f = fake(answers={("db1", EXECUTED): [{"g": f"{U1}:1-5,{U2}:1-3"}]},
             state={"final_position": {"gtid": MULTILINE}})
    assert FenceCheck().apply(as_ctx(f)) == f"db1 still at {CANONICAL}"


def test_fence_check_still_refuses_a_moved_position() -> None:
    f = fake(answers={("db1", EXECUTED): [{"g": f"{U1}:1-6,\n{U2}:1-3"}]},
             state={"final_position": {"gtid": MULTILINE}})
    with pytest.raises(StepError) as ei:
        FenceCheck().apply(as_ctx(f))
    assert "\n" not in ei.value.message and f"to {U1}:1-6,{U2}:1-3" in ei.value.message
    # on MySQL no account writes through super_read_only: the writer is replication
    assert "(replication into it (super_read_only stops every account))" in ei.value.message
    assert "--kill-privileged" not in ei.value.remedy
    f = fake(MARIADB, answers={("db1", "SELECT @@GLOBAL.gtid_binlog_pos AS g"): [{"g": "0-1-9"}]},
             state={"final_position": {"gtid": "0-1-8"}})
    with pytest.raises(StepError) as ei:
        FenceCheck().apply(as_ctx(f))
    assert "account holding READ ONLY ADMIN" in ei.value.message
    assert "--kill-privileged" in ei.value.remedy


def test_a_wait_on_a_server_that_does_not_replicate_says_so() -> None:
    # SOURCE_POS_WAIT / MASTER_POS_WAIT return NULL with no source or the SQL thread stopped
    f = fake(state={"mode": "filepos"}, answers={
        ("db1", "SHOW BINARY LOG STATUS"): [{"File": "b.000002", "Position": 157}],
        ("db2", "SELECT SOURCE_POS_WAIT(%s, %s, %s)"): [{"w": None}]})
    with pytest.raises(StepError) as ei:
        PreSync().apply(as_ctx(f))
    assert "db2 is not replicating" in ei.value.message
    assert "start replication on db2" in ei.value.remedy
    f.answers[("db2", "SELECT SOURCE_POS_WAIT(%s, %s, %s)")] = [{"w": -1}]
    with pytest.raises(StepError) as ei:
        PreSync().apply(as_ctx(f))
    assert "did not reach db1's position within 10s" in ei.value.message


# -- extra transactions, either flavor ----------------------------------------------------

def test_extra_transactions_mysql_reads_have_first_and_is_canonical() -> None:
    f = fake(answers={("db2", EXECUTED): [{"g": f"{U1}:1-7,\n{U2}:1-3"}],
                      ("db1", EXECUTED): [{"g": MULTILINE}]})
    assert extra_transactions(as_ctx(f), "db2", "db1") == f"{U1}:6-7"
    # have (db2) read once and first; a real difference survives the re-reads of db1
    assert [n for n, _sql, _p in f.log] == ["db2"] + ["db1"] * 5
    f.log.clear()
    assert extra_transactions(as_ctx(f), "db1", "db2") == ""
    assert [n for n, _sql, _p in f.log] == ["db1", "db2"]  # no difference: no re-read


def test_a_primary_listing_its_commit_late_is_not_errant() -> None:
    """MySQL adds a transaction to gtid_executed after its replicas may have applied it:
    the replica read first holds U1:8, the primary's first read lacks it, its next has it."""
    reads = iter([f"{U1}:1-7", f"{U1}:1-8"])
    f = fake(answers={("db2", EXECUTED): [{"g": f"{U1}:1-8"}],
                      ("db1", EXECUTED): lambda _p: [{"g": next(reads)}]})
    assert extra_transactions(as_ctx(f), "db2", "db1") == ""
    assert [n for n, _sql, _p in f.log] == ["db2", "db1", "db1"]


def test_extra_transactions_mariadb_compares_binlog_states() -> None:
    sql = "SELECT @@GLOBAL.gtid_binlog_state AS g"
    f = fake(MARIADB, answers={("db2", sql): [{"g": "0-1-10,0-2-101"}], ("db1", sql): [{"g": "0-1-150"}]})
    assert extra_transactions(as_ctx(f), "db2", "db1") == "0-2-101"
    f.state["mode"] = "filepos"
    assert extra_transactions(as_ctx(f), "db2", "db1") is None


def test_received_parses_the_position_as_the_servers_flavor() -> None:
    row = {"Source_Host": "h", "Source_Port": 1, "Replica_IO_Running": "Yes",
           "Replica_SQL_Running": "Yes", "Auto_Position": 1,
           "Retrieved_Gtid_Set": f"{U1}:1-5,\n{U2}:1-3", "Executed_Gtid_Set": f"{U1}:1-2"}
    r = ReplicaStatus.from_row(row)
    srv = Server(name="db3", host="h", port=1, reachable=True, flavor="mysql", dialect=MYSQL84)
    assert _received(srv, r, {"gtid": MULTILINE})
    assert not _received(srv, r, {"gtid": f"{U1}:1-6"})


# -- MySQL: super_read_only stops every account --------------------------------------------

def test_fence_kill_privileged_on_mysql_is_a_stated_no_op() -> None:
    f = fake(opts=SwapOptions(kill_privileged=True))
    detail = Fence().apply(as_ctx(f))
    assert detail == ("db1 super_read_only; --kill-privileged: nothing to kill, super_read_only "
                      "stops every account")
    assert f.statements("db1") == ["SET SESSION lock_wait_timeout=%s, PERSIST super_read_only=1"]


def test_preflight_fence_on_mysql_says_kill_privileged_has_nothing_to_do() -> None:
    s = Server(name="db1", host="h", port=1, reachable=True, flavor="mysql", dialect=MYSQL84)
    topo = Topology.of([s], resolve=lambda _h: frozenset())
    f = fake(opts=SwapOptions(kill_privileged=True))
    [check] = writer_checks(as_ctx(f), topo, s)
    assert (check.status, check.message) == (
        "ok", "super_read_only on db1 stops every account; --kill-privileged has nothing to kill")
    f = fake()
    assert writer_checks(as_ctx(f), topo, s)[0].message == "super_read_only on db1 stops every account"


# -- status remedies in the servers' SQL ------------------------------------------------------

def _data(writable: list[str], cycles: list[list[str]] | None = None) -> dict[str, Any]:
    return {"writable": writable, "servers": [{"name": "db1", "reachable": True}],
            "replication_cycles": cycles or []}


def test_status_remedies_speak_mysql_84() -> None:
    hints = sql_hints(MYSQL84)
    two = dangers(_data(["db1", "db2"]), hints)[0]
    assert "SET PERSIST super_read_only=1 on the others" in two
    none = dangers(_data([]), hints)[0]
    assert "SET GLOBAL super_read_only=0; SET GLOBAL read_only=0 on the server" in none
    cycle = dangers(_data(["db1"], [["db1", "db2"]]), hints)[0]
    assert "STOP REPLICA; RESET REPLICA ALL" in cycle and "SLAVE" not in cycle


def test_status_remedies_default_to_mariadb() -> None:
    assert "SET GLOBAL read_only=1 on the others" in dangers(_data(["db1", "db2"]))[0]
    assert "STOP SLAVE; RESET SLAVE ALL" in dangers(_data(["db1"], [["db1", "db2"]]))[0]


# -- replication filters: cleared as the server's flavor does it ----------------------------

def _replica_with(d: Dialect, **filters: str) -> Server:
    row = {"Source_Host": "h", "Source_Port": 1, "Replica_IO_Running": "Yes",
           "Replica_SQL_Running": "Yes", **filters}
    if d is MARIADB:
        row = {"Master_Host": "h", "Master_Port": 1, "Slave_IO_Running": "Yes",
               "Slave_SQL_Running": "Yes", **filters}
    return Server(name="db2", host="h", port=1, reachable=True, flavor=d.flavor, dialect=d,
                  replica=ReplicaStatus.from_row(row))


@pytest.mark.parametrize(("d", "filters", "fix"), [
    (MYSQL84, {"Replicate_Wild_Do_Table": "app.%"},
     "STOP REPLICA; CHANGE REPLICATION FILTER REPLICATE_WILD_DO_TABLE=(); START REPLICA; "
     "and remove it from my.cnf"),
    (MYSQL84, {"Replicate_Ignore_Server_Ids": "7"},
     "STOP REPLICA; CHANGE REPLICATION SOURCE TO IGNORE_SERVER_IDS=(); START REPLICA"),
    (MARIADB, {"Replicate_Ignore_Table": "app.t"},
     "STOP SLAVE; SET GLOBAL replicate_ignore_table=''; START SLAVE; and remove it from my.cnf"),
    (MARIADB, {"Replicate_Ignore_Domain_Ids": "2"},
     "STOP SLAVE; CHANGE MASTER TO IGNORE_DOMAIN_IDS=(); START SLAVE"),
], ids=["mysql-filter", "mysql-option", "mariadb-variable", "mariadb-option"])
def test_filter_on_target_remedy_in_the_targets_sql(d: Dialect, filters: dict[str, str],
                                                   fix: str) -> None:
    from roleswap.swap.preflight_replication import _target_settings

    t = _replica_with(d, **filters)
    [check] = _target_settings(t, t)
    assert check.status == "fail" and f"({fix})" in check.remedy


def test_filter_on_mysql_source_remedy_uses_change_replication_filter() -> None:
    from roleswap.swap.preflight_replication import _source_filters

    d = MYSQL84
    f = fake(answers={("db1", d.global_filters_sql): [
        {"name": "REPLICATE_IGNORE_TABLE", "rule": "app.t"}, {"name": "REPLICATE_DO_DB", "rule": ""}]})
    s = Server(name="db1", host="h", port=1, reachable=True, dialect=d)
    [check] = _source_filters(as_ctx(f), s, s)
    assert "REPLICATE_IGNORE_TABLE=app.t" in check.message
    assert "clear them (CHANGE REPLICATION FILTER REPLICATE_IGNORE_TABLE=())" in check.remedy


def test_pre_sync_waits_again_until_one_wait_is_short() -> None:
    """Under heavy writes lag builds again while pre-sync waits: it re-reads the primary
    and waits again until a wait is short, so the paused catch-up inherits little."""
    import time

    slow = [0.03, 0.03]  # the first two waits take 30 ms (lag), then they are instant

    def wait(params: tuple[Any, ...]) -> list[dict[str, Any]]:
        if slow:
            time.sleep(slow.pop())
        return [{"w": 0}]

    f = fake(answers={("db1", EXECUTED): [{"g": CANONICAL}], ("db2", MYSQL_WAIT): wait})
    detail = PreSync().apply(as_ctx(f))
    reads = [n for n, sql, _ in f.log if sql == EXECUTED]
    assert len(reads) >= 3 and detail.startswith(f"caught up ({len(reads)} rounds"), detail
