"""Replica-status normalisation, Server/Topology logic and source resolution (no server)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from roleswap.mysql.dialect import MARIADB, MYSQL57, MYSQL80, MYSQL84, ReplicaStatus
from roleswap.mysql.gtid import GtidSet, MariaGtidPos
from roleswap.mysql.topology import (
    Activity,
    Server,
    Topology,
    _activity,
    _server_from_rows,
    resolve_sources,
)

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-82db-22f2-af44-d91bb0530673"

# A row as MariaDB 10.11 prints SHOW ALL SLAVES STATUS (trimmed to the columns we read).
MARIA_ROW: dict[str, Any] = {
    "Connection_name": "",
    "Master_Host": "127.0.0.1",
    "Master_User": "repl",
    "Master_Port": 23401,
    "Master_Log_File": "bin.000002",
    "Read_Master_Log_Pos": 837,
    "Relay_Master_Log_File": "bin.000001",
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Exec_Master_Log_Pos": 700,
    "Seconds_Behind_Master": 0,
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Master_Server_Id": 1,
    "Using_Gtid": "Slave_Pos",
    "Gtid_IO_Pos": "0-1-3",
    "SQL_Delay": 0,
}

MYSQL57_ROW: dict[str, Any] = {
    "Master_Host": "db1",
    "Master_User": "repl",
    "Master_Port": 3306,
    "Master_Log_File": "mysql-bin.000009",
    "Read_Master_Log_Pos": 4400,
    "Relay_Master_Log_File": "mysql-bin.000009",
    "Slave_IO_Running": "Connecting",
    "Slave_SQL_Running": "Yes",
    "Exec_Master_Log_Pos": 4400,
    "Seconds_Behind_Master": None,
    "Last_IO_Errno": 2003,
    "Last_IO_Error": "error connecting to master 'repl@db1:3306'",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Master_Server_Id": 0,
    "Retrieved_Gtid_Set": "",
    "Executed_Gtid_Set": f"{U1.upper()}:1-100,\n{U2}:1-5",
    "Auto_Position": 1,
    "SQL_Delay": 0,
    "Channel_Name": "",
}

MYSQL80_ROW: dict[str, Any] = {
    "Source_Host": "10.0.0.1",
    "Source_User": "repl",
    "Source_Port": 3306,
    "Source_Log_File": "binlog.000003",
    "Read_Source_Log_Pos": 157,
    "Relay_Source_Log_File": "binlog.000003",
    "Replica_IO_Running": "Yes",
    "Replica_SQL_Running": "No",
    "Exec_Source_Log_Pos": 100,
    "Seconds_Behind_Source": None,
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 1062,
    "Last_SQL_Error": "Duplicate entry",
    "Source_Server_Id": 11,
    "Retrieved_Gtid_Set": f"{U1}:90-120",
    "Executed_Gtid_Set": f"{U1}:1-110",
    "Auto_Position": 0,
    "SQL_Delay": 30,
    "Channel_Name": "",
}


def test_replica_status_mariadb() -> None:
    r = ReplicaStatus.from_row(MARIA_ROW)
    assert (r.source_host, r.source_port, r.source_user, r.source_server_id) == (
        "127.0.0.1", 23401, "repl", 1)
    assert r.running and r.io_running and r.sql_running
    assert (r.source_log_file, r.read_source_log_pos) == ("bin.000002", 837)
    assert (r.relay_source_log_file, r.exec_source_log_pos) == ("bin.000001", 700)
    assert r.seconds_behind == 0
    assert r.using_gtid == "Slave_Pos" and r.gtid_mode
    assert r.gtid_io_pos == MariaGtidPos.parse("0-1-3")
    assert r.retrieved_gtid_set is None and r.executed_gtid_set is None
    assert r.error is None


def test_replica_status_mysql57() -> None:
    r = ReplicaStatus.from_row(MYSQL57_ROW)
    assert r.source_host == "db1"
    assert r.io_state == "Connecting" and not r.io_running and not r.running
    assert r.seconds_behind is None
    assert r.source_server_id is None  # 0 = never connected
    assert r.using_gtid == "Auto_Position" and r.gtid_mode
    assert r.gtid_io_pos is None
    assert r.retrieved_gtid_set == GtidSet()
    assert r.executed_gtid_set == GtidSet.parse(f"{U1}:1-100,{U2}:1-5")
    assert r.error == "IO error 2003: error connecting to master 'repl@db1:3306'"


def test_replica_status_mysql80_names() -> None:
    r = ReplicaStatus.from_row(MYSQL80_ROW)
    assert (r.source_host, r.source_port, r.source_server_id) == ("10.0.0.1", 3306, 11)
    assert r.io_running and not r.sql_running and not r.running
    assert (r.source_log_file, r.read_source_log_pos, r.exec_source_log_pos) == (
        "binlog.000003", 157, 100)
    assert r.using_gtid == "No" and not r.gtid_mode
    assert r.sql_delay == 30
    assert (r.executed_gtid_set or GtidSet()).count() == 110
    assert r.error == "SQL error 1062: Duplicate entry"


def test_replica_status_same_values_from_old_and_new_names() -> None:
    """A 5.7-named row and its 8.0-renamed twin normalise to the same value."""
    rename = {
        "Master_Host": "Source_Host", "Master_User": "Source_User", "Master_Port": "Source_Port",
        "Master_Log_File": "Source_Log_File", "Read_Master_Log_Pos": "Read_Source_Log_Pos",
        "Relay_Master_Log_File": "Relay_Source_Log_File", "Slave_IO_Running": "Replica_IO_Running",
        "Slave_SQL_Running": "Replica_SQL_Running", "Exec_Master_Log_Pos": "Exec_Source_Log_Pos",
        "Seconds_Behind_Master": "Seconds_Behind_Source", "Master_Server_Id": "Source_Server_Id",
    }
    renamed = {rename.get(k, k): v for k, v in MYSQL57_ROW.items()}
    assert set(renamed) != set(MYSQL57_ROW)
    assert ReplicaStatus.from_row(renamed) == ReplicaStatus.from_row(MYSQL57_ROW)


def test_replica_status_errors_both() -> None:
    row = dict(MARIA_ROW, Last_IO_Errno=1236, Last_IO_Error="x", Last_SQL_Errno=1950,
               Last_SQL_Error="out of order", Slave_IO_Running="No")
    r = ReplicaStatus.from_row(row)
    assert r.error == "IO error 1236: x; SQL error 1950: out of order"
    assert not r.running


# -- Server from raw rows ----------------------------------------------------------

MARIA_VARS: dict[str, Any] = {
    "version": "10.11.19-MariaDB-log", "server_id": 2, "read_only": 1, "log_bin": 1,
    "max_connections": 151, "hostname": "vm", "port": 23402, "report_host": "127.0.0.1",
    "report_port": 23402, "super_read_only": None, "log_replica_updates": 1,
    "gtid_strict_mode": 1, "gtid_binlog_pos": "0-1-3", "gtid_current_pos": "0-1-3",
    "gtid_slave_pos": "0-1-3", "gtid_binlog_state": "0-2-1,0-1-3",
}


def test_server_fields_mariadb() -> None:
    f = _server_from_rows(MARIADB, MARIA_VARS, [MARIA_ROW], [{"File": "bin.000001", "Position": 837}])
    s = Server(name="db2", host="127.0.0.1", port=23402, reachable=True, **f)
    assert s.flavor == "mariadb" and s.server_id == 2
    assert s.read_only is True and s.super_read_only is None and not s.writable
    assert s.log_bin and s.log_replica_updates and s.gtid_strict_mode
    assert s.gtid_binlog_state == MariaGtidPos.parse("0-1-3,0-2-1", state=True)
    assert s.gtid_current_pos == MariaGtidPos.parse("0-1-3")
    assert s.gtid_executed is None
    assert s.gtid_mode is True
    assert (s.binlog_file, s.binlog_pos) == ("bin.000001", 837)
    assert s.replica is not None and s.replica.source_port == 23401
    assert s.max_connections == 151


def test_server_mariadb_gtid_mode_false_when_no_gtids_anywhere() -> None:
    v = dict(MARIA_VARS, gtid_binlog_pos="", gtid_binlog_state="", read_only=0)
    f = _server_from_rows(MARIADB, v, [], [])
    s = Server(name="db1", host="h", port=1, reachable=True, **f)
    assert s.gtid_mode is False
    assert s.writable
    assert s.binlog_file is None and s.replica is None


def test_server_mariadb_gtid_mode_true_when_replicating_by_gtid() -> None:
    v = dict(MARIA_VARS, gtid_binlog_pos="", gtid_binlog_state="")
    f = _server_from_rows(MARIADB, v, [MARIA_ROW], [])
    assert f["gtid_mode"] is True
    f = _server_from_rows(MARIADB, v, [dict(MARIA_ROW, Using_Gtid="No")], [])
    assert f["gtid_mode"] is False


@pytest.mark.parametrize("dialect", [MYSQL57, MYSQL80, MYSQL84], ids=lambda d: d.name)
def test_server_fields_mysql(dialect: Any) -> None:
    v = {"version": "8.0.36", "server_id": 11, "read_only": 0, "super_read_only": 0,
         "log_bin": 1, "log_replica_updates": 1, "gtid_mode": "ON",
         "gtid_executed": f"{U1}:1-5,\n{U2}:1-3", "max_connections": 500, "port": 3306,
         "report_host": "", "report_port": 3306, "hostname": "db1"}
    f = _server_from_rows(dialect, v, [], [{"File": "binlog.000001", "Position": 157}])
    s = Server(name="db1", host="db1", port=3306, reachable=True, **f)
    assert s.writable and s.super_read_only is False
    assert s.gtid_mode is True
    assert s.gtid_executed == GtidSet.parse(f"{U2}:1-3,{U1}:1-5")
    assert s.gtid_binlog_pos is None
    assert s.report_host is None  # empty report_host means "not set"
    assert not replace(s, super_read_only=True).writable
    assert not replace(s, gtid_mode=False).gtid_mode


def test_default_channel_preferred_over_named() -> None:
    named = dict(MARIA_ROW, Connection_name="other", Master_Port=1)
    f = _server_from_rows(MARIADB, MARIA_VARS, [named, MARIA_ROW], [])
    assert f["replica"].channel == "" and f["replica"].source_port == 23401
    assert len(f["channels"]) == 2
    f = _server_from_rows(MARIADB, MARIA_VARS, [named], [])
    assert f["replica"].channel == "other"


def test_activity_rows() -> None:
    rows = [
        {"kind": "trx", "id": 12, "user": None, "command": None, "age": 40},
        {"kind": "stmt", "id": 13, "user": "app", "command": "Query", "age": 7},
    ]
    a = _activity(rows)
    assert a["longest_trx"] == Activity(12, 40)
    assert a["longest_statement"] == Activity(13, 7, "app", "Query")
    assert _activity([]) == {"longest_trx": None, "longest_statement": None}


def test_unreachable_and_errored_servers_are_not_writable() -> None:
    assert not Server(name="x", host="h", port=1, reachable=False, error="down").writable
    assert not Server(name="x", host="h", port=1, reachable=True, error="denied",
                      read_only=False).writable
    assert not Server(name="x", host="h", port=1, reachable=True).writable  # read_only unknown


# -- source resolution -------------------------------------------------------------


def srv(name: str, host: str, port: int, server_id: int, source: tuple[str, int] | None = None,
        **kw: Any) -> Server:
    replica = None
    if source is not None:
        replica = ReplicaStatus.from_row(
            dict(MARIA_ROW, Master_Host=source[0], Master_Port=source[1],
                 Master_Server_Id=kw.pop("source_server_id", 0)))
    return Server(name=name, host=host, port=port, reachable=True, server_id=server_id,
                  read_only=source is not None, replica=replica, **kw)


def no_dns(host: str) -> frozenset[str]:
    return frozenset()


def test_sources_by_config_address() -> None:
    servers = [
        srv("db1", "10.0.0.1", 3306, 1),
        srv("db2", "10.0.0.2", 3306, 2, ("10.0.0.1", 3306)),
        srv("db3", "10.0.0.3", 3306, 3, ("10.0.0.1", 3306)),
    ]
    topo = Topology.of(servers, read_at=1.0, resolve=no_dns)
    assert dict(topo.sources) == {"db2": "db1", "db3": "db1"}
    assert [s.name for s in topo.replicas_of("db1")] == ["db2", "db3"]
    assert topo.replicas_of("db2") == []
    assert topo.source_of("db1") is None
    assert [s.name for s in topo.writable()] == ["db1"]
    assert topo.by_name("db3").server_id == 3
    assert topo.read_at == 1.0
    with pytest.raises(KeyError):
        topo.by_name("nope")


def test_sources_same_host_different_ports() -> None:
    servers = [
        srv("db1", "127.0.0.1", 23401, 1),
        srv("db2", "127.0.0.1", 23402, 2, ("127.0.0.1", 23401)),
        srv("db3", "127.0.0.1", 23403, 3, ("127.0.0.1", 23402)),  # chained
    ]
    topo = Topology.of(servers, resolve=no_dns)
    assert dict(topo.sources) == {"db2": "db1", "db3": "db2"}


def test_sources_by_report_host_and_hostname_case_insensitive() -> None:
    servers = [
        srv("db1", "10.0.0.1", 3306, 1, report_host="DB1.prod", report_port=3306),
        srv("db2", "10.0.0.2", 3306, 2, ("db1.prod", 3306)),
        srv("db4", "10.0.0.4", 3306, 4, hostname="box4"),
        srv("db5", "10.0.0.5", 3306, 5, ("BOX4", 3306)),
    ]
    assert resolve_sources(servers, no_dns) == {"db2": "db1", "db5": "db4"}


def test_sources_by_configured_replication_address() -> None:
    """Containers: roleswap reaches published 127.0.0.1 ports, replicas know ``db1:3306``
    (servers.<n>.replication_host/_port), and every container reports port 3306."""
    servers = [
        srv("db1", "127.0.0.1", 41001, 1, replication_address=("db1", 3306)),
        srv("db2", "127.0.0.1", 41002, 2, ("db1", 3306), replication_address=("db2", 3306)),
        srv("db3", "127.0.0.1", 41003, 3, ("DB2", 3306), replication_address=("db2", 3306)),
    ]
    assert resolve_sources(servers, no_dns) == {"db2": "db1", "db3": "db2"}


def test_sources_by_resolved_ip() -> None:
    table = {"db1.example": frozenset({"10.0.0.1"}), "10.0.0.1": frozenset({"10.0.0.1"})}

    def fake(host: str) -> frozenset[str]:
        return table.get(host, frozenset())

    servers = [
        srv("db1", "10.0.0.1", 3306, 1),
        srv("db2", "10.0.0.2", 3306, 2, ("db1.example", 3306)),
        srv("db3", "10.0.0.3", 3306, 3, ("db1.example", 3307)),  # port differs: no match
    ]
    assert resolve_sources(servers, fake) == {"db2": "db1", "db3": None}


def test_sources_fall_back_to_server_id_then_unknown() -> None:
    servers = [
        srv("db1", "10.0.0.1", 3306, 1),
        srv("db2", "10.0.0.2", 3306, 2, ("vip.example", 3306), source_server_id=1),
        srv("db3", "10.0.0.3", 3306, 3, ("elsewhere", 3306), source_server_id=99),
    ]
    assert resolve_sources(servers, no_dns) == {"db2": "db1", "db3": None}


def test_sources_ambiguous_match_is_unknown() -> None:
    servers = [
        srv("a", "10.0.0.1", 3306, 1, hostname="dup"),
        srv("b", "10.0.0.9", 3306, 5, hostname="dup"),
        srv("c", "10.0.0.3", 3306, 3, ("dup", 3306)),
    ]
    assert resolve_sources(servers, no_dns) == {"c": None}


def test_a_server_is_never_its_own_source() -> None:
    servers = [srv("db1", "10.0.0.1", 3306, 1, ("10.0.0.1", 3306), source_server_id=1)]
    assert resolve_sources(servers, no_dns) == {"db1": None}
