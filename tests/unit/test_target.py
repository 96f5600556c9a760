"""Choosing the target when no --to is given: eligibility, priority, lag, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from roleswap.config import parse_config
from roleswap.errors import ConfigError, PreflightError, UsageError
from roleswap.mysql.dialect import ReplicaStatus
from roleswap.mysql.topology import Server, Topology
from roleswap.swap.target import choose_target

ROW: dict[str, Any] = {
    "Connection_name": "", "Master_Host": "10.0.0.1", "Master_User": "repl", "Master_Port": 3306,
    "Master_Log_File": "bin.000002", "Read_Master_Log_Pos": 837, "Relay_Master_Log_File": "bin.000002",
    "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Exec_Master_Log_Pos": 837,
    "Seconds_Behind_Master": 0, "Last_IO_Errno": 0, "Last_IO_Error": "", "Last_SQL_Errno": 0,
    "Last_SQL_Error": "", "Master_Server_Id": 1, "Using_Gtid": "Slave_Pos", "Gtid_IO_Pos": "0-1-3",
    "SQL_Delay": 0,
}


def config(**servers: dict[str, Any]) -> Any:
    base = {"db1": {"host": "10.0.0.1"}, "db2": {"host": "10.0.0.2"}, "db3": {"host": "10.0.0.3"},
            "db4": {"host": "10.0.0.4"}}
    for name, extra in servers.items():
        base[name] = {**base.get(name, {"host": f"10.0.0.{len(base) + 1}"}), **extra}
    return parse_config({"cluster": "c", "mysql": {"user": "u", "password": "p"},
                         "replication": {"user": "r", "password": "p"}, "servers": base})


def srv(name: str, *, version: str = "10.11.19-MariaDB", **row: Any) -> Server:
    ip = "10.0.0." + name[-1]
    replica = None if name == "db1" else ReplicaStatus.from_row({**ROW, **row})
    return Server(name=name, host=ip, port=3306, reachable=True, flavor="mariadb", version=version,
                  server_id=int(name[-1]), read_only=name != "db1", replica=replica)


def topo(*servers: Server) -> Topology:
    return Topology.of(servers, read_at=0.0, resolve=lambda h: frozenset())


def test_least_lag_wins_then_name() -> None:
    t = topo(srv("db1"), srv("db2", Seconds_Behind_Master=3), srv("db3", Seconds_Behind_Master=0),
             srv("db4", Seconds_Behind_Master=0))
    c = choose_target(config(), t, "db1")
    assert c.target == "db3"
    assert "lag 0 s" in c.reason and "db3" in c.reason
    assert dict(c.others) == {"db4": "priority 0, lag 0 s", "db2": "priority 0, lag 3 s"}


def test_priority_beats_lag_and_candidate_false_is_never_chosen() -> None:
    t = topo(srv("db1"), srv("db2", Seconds_Behind_Master=4), srv("db3"), srv("db4"))
    c = choose_target(config(db2={"priority": 10}, db3={"candidate": False}), t, "db1")
    assert c.target == "db2"
    assert dict(c.others)["db3"] == "candidate = false in the config"


@pytest.mark.parametrize("row,version,why", [
    ({"SQL_Delay": 3600}, "10.11.19-MariaDB", "delayed replica (SQL_Delay 3600 s)"),
    ({"Replicate_Ignore_Table": "app.t"}, "10.11.19-MariaDB", "replication filters"),
    ({"Slave_SQL_Running": "No"}, "10.11.19-MariaDB", "threads are not both running"),
    ({}, "11.8.9-MariaDB", "runs mariadb 11.8, db1 runs mariadb 10.11"),
])
def test_ineligible_replicas_are_skipped_with_the_reason(row: dict[str, Any], version: str,
                                                         why: str) -> None:
    t = topo(srv("db1"), srv("db2", version=version, **row), srv("db3", Seconds_Behind_Master=9))
    c = choose_target(config(), t, "db1")
    assert c.target == "db3"
    assert why in dict(c.others)["db2"]


def test_only_direct_replicas_are_candidates() -> None:
    t = topo(srv("db1"), srv("db2"), srv("db3", Master_Host="10.0.0.2"))  # db3 is db2's replica
    c = choose_target(config(), t, "db1")
    assert c.target == "db2" and "db3" not in dict(c.others)


def test_no_eligible_replica_refuses_naming_each() -> None:
    t = topo(srv("db1"), srv("db2", SQL_Delay=60), srv("db3", Slave_IO_Running="No"))
    with pytest.raises(PreflightError) as e:
        choose_target(config(), t, "db1")
    assert "db2: delayed replica" in e.value.message and "db3: replication threads" in e.value.message
    assert "--to" in e.value.remedy


def test_unknown_or_unreadable_source() -> None:
    t = topo(srv("db1"), srv("db2"))
    with pytest.raises(UsageError):
        choose_target(config(), t, "nope")
    down = Server(name="db1", host="10.0.0.1", port=3306, reachable=False, error="refused")
    with pytest.raises(PreflightError) as e:
        choose_target(config(), topo(down, srv("db2")), "db1")
    assert "db1 cannot be read" in e.value.message


@pytest.mark.parametrize("extra,needle", [
    ({"priority": "high"}, "priority must be an integer"),
    ({"priority": True}, "priority must be an integer"),
    ({"candidate": "no"}, "candidate must be true or false"),
])
def test_bad_priority_or_candidate_is_a_config_error(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        config(db2=extra)
    assert needle in e.value.message


def test_a_stale_seconds_behind_does_not_rank_a_caught_up_replica_last() -> None:
    """db2 has applied every GTID db1 logged but reports 14 s (MariaDB, just after a
    reconnect: the age of db1's binlog header); db3 really is 2 s behind."""
    from dataclasses import replace

    from roleswap.mysql.gtid import MariaGtidPos

    def gtid(s: Server, applied: str) -> Server:
        return replace(s, gtid_mode=True, gtid_position=MariaGtidPos.parse(applied),
                       gtid_current_pos=MariaGtidPos.parse(applied))

    t = topo(gtid(srv("db1"), "0-1-100"), gtid(srv("db2", Seconds_Behind_Master=14), "0-1-100"),
             gtid(srv("db3", Seconds_Behind_Master=2), "0-1-97"))
    c = choose_target(config(), t, "db1")
    assert c.target == "db2" and "lag 0 s" in c.reason
    assert dict(c.others) == {"db3": "priority 0, lag 2 s"}
