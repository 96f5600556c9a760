"""Preflight's lag check: Seconds_Behind_Master decides, except that a replica which has
already applied every GTID its source logged is not behind (MariaDB reports the age of
the source's binlog header for a moment after a reconnect: a spurious refusal of the
swap back, seen 4 times in about 900 back-to-back lab swaps)."""

from __future__ import annotations

from roleswap.mysql.dialect import MARIADB, MYSQL84, ReplicaStatus
from roleswap.mysql.gtid import GtidSet, MariaGtidPos
from roleswap.mysql.topology import Server
from roleswap.swap.preflight_replication import lag_check

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def _status(lag: int | None) -> ReplicaStatus:
    return ReplicaStatus.from_row({"Master_Host": "h", "Master_Port": 1, "Slave_IO_Running": "Yes",
                                   "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": lag})


def _maria(name: str, logged: str, applied: str | None = None) -> Server:
    return Server(name=name, host="h", port=1, reachable=True, dialect=MARIADB, gtid_mode=True,
                  gtid_position=MariaGtidPos.parse(logged),
                  gtid_current_pos=MariaGtidPos.parse(applied if applied is not None else logged))


def _mysql(name: str, executed: str, gtid_mode: bool = True) -> Server:
    return Server(name=name, host="h", port=1, reachable=True, dialect=MYSQL84, gtid_mode=gtid_mode,
                  gtid_position=GtidSet.parse(executed), gtid_executed=GtidSet.parse(executed))


def test_within_the_limit_passes_on_seconds_behind_alone() -> None:
    c = lag_check(_maria("db1", "0-1-9"), _maria("db2", "0-1-3"), _status(2), 5.0)
    assert c.status == "ok" and c.message == "db2 is 2s behind (limit 5s)"


def test_a_stale_figure_on_a_caught_up_mariadb_replica_passes_and_says_why() -> None:
    c = lag_check(_maria("db1", "0-1-2"), _maria("db2", "0-2-7", applied="0-1-2"), _status(14), 5.0)
    assert c.status == "ok", c.message
    assert "db2 has applied every transaction db1 has logged" in c.message and "14s" in c.message


def test_a_replica_that_lacks_transactions_is_refused() -> None:
    c = lag_check(_maria("db1", "0-1-9"), _maria("db2", "0-1-8"), _status(14), 5.0)
    assert c.status == "fail" and c.message == "db2 is 14s behind (limit 5s)"
    assert "raise --max-lag" in c.remedy


def test_another_domain_it_never_applied_is_refused() -> None:
    c = lag_check(_maria("db1", "0-1-9,1-1-4"), _maria("db2", "0-1-9"), _status(30), 5.0)
    assert c.status == "fail"


def test_mysql_sets_compare_by_inclusion() -> None:
    s = _mysql("db1", f"{U1}:1-10")
    assert lag_check(s, _mysql("db2", f"{U1}:1-10"), _status(9), 5.0).status == "ok"
    assert lag_check(s, _mysql("db2", f"{U1}:1-9"), _status(9), 5.0).status == "fail"


def test_unknown_lag_is_refused_even_when_caught_up() -> None:
    """NULL: the IO thread is not connected -- no figure to distrust, so no pass."""
    c = lag_check(_maria("db1", "0-1-2"), _maria("db2", "0-1-2"), _status(None), 5.0)
    assert c.status == "fail" and c.message == "db2 is ?s behind (limit 5s)"


def test_no_gtid_positions_fall_back_to_seconds_behind() -> None:
    s = Server(name="db1", host="h", port=1, reachable=True, dialect=MARIADB)
    t = Server(name="db2", host="h", port=1, reachable=True, dialect=MARIADB)
    assert lag_check(s, t, _status(14), 5.0).status == "fail"


def test_mysql_without_gtids_proves_nothing() -> None:
    """gtid_mode OFF: both sets are empty, so "applied all of nothing" must not pass a lag."""
    assert lag_check(_mysql("db1", "", False), _mysql("db2", "", False), _status(14), 5.0).status == "fail"


def test_an_empty_source_position_proves_nothing() -> None:
    assert lag_check(_maria("db1", ""), _maria("db2", ""), _status(14), 5.0).status == "fail"
