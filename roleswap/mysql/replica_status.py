"""One replication channel's status, whatever the flavor calls its columns.

MariaDB and MySQL 5.7 say Master_/Slave_; MySQL 8.0.22+ and 8.4 say Source_/Replica_.
:meth:`ReplicaStatus.from_row` reads either into the same frozen value, including
every replication filter the channel applies (:data:`FILTER_COLUMNS`) and its
``SQL_Delay``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from roleswap.mysql.gtid import GtidSet, MariaGtidPos


def _pick(row: Mapping[str, Any], *names: str) -> Any:
    """The first present column among ``names`` (8.0.22+ name first, old name second)."""
    for n in names:
        if n in row:
            return row[n]
    return None


def _opt_int(v: Any) -> int | None:
    return None if v is None or v == "" else int(v)


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode()
    return "" if v is None else str(v)


# Every SHOW SLAVE/REPLICA STATUS column that makes a replica skip or rewrite events,
# with the setting that controls it: (MariaDB, MySQL).  A ``replicate_*`` name is a
# server variable (MariaDB: SET GLOBAL while the replica is stopped; MySQL: CHANGE
# REPLICATION FILTER); an upper-case name is a CHANGE MASTER / CHANGE REPLICATION
# SOURCE option.  ``None``: the flavor has no such filter.
FILTER_COLUMNS: dict[str, tuple[str | None, str | None]] = {
    "Replicate_Do_DB": ("replicate_do_db", "REPLICATE_DO_DB"),
    "Replicate_Ignore_DB": ("replicate_ignore_db", "REPLICATE_IGNORE_DB"),
    "Replicate_Do_Table": ("replicate_do_table", "REPLICATE_DO_TABLE"),
    "Replicate_Ignore_Table": ("replicate_ignore_table", "REPLICATE_IGNORE_TABLE"),
    "Replicate_Wild_Do_Table": ("replicate_wild_do_table", "REPLICATE_WILD_DO_TABLE"),
    "Replicate_Wild_Ignore_Table": ("replicate_wild_ignore_table", "REPLICATE_WILD_IGNORE_TABLE"),
    "Replicate_Rewrite_DB": ("replicate_rewrite_db", "REPLICATE_REWRITE_DB"),
    "Replicate_Ignore_Server_Ids": ("IGNORE_SERVER_IDS", "IGNORE_SERVER_IDS"),
    "Replicate_Do_Domain_Ids": ("DO_DOMAIN_IDS", None),
    "Replicate_Ignore_Domain_Ids": ("IGNORE_DOMAIN_IDS", None),
}


def filter_setting(column: str, flavor: str) -> str:
    """How ``flavor`` ("mariadb" / "mysql") names the setting behind filter ``column``
    (the column itself where the flavor has no such filter)."""
    maria, mysql = FILTER_COLUMNS[column]
    return (maria if flavor == "mariadb" else mysql) or column


def _filters(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(column, value) for every filter column present and non-empty, in table order."""
    out = []
    for col in FILTER_COLUMNS:
        value = _text(row.get(col)).strip()
        if value:
            out.append((col, value))
    return tuple(out)


def _binlog_index(name: str) -> tuple[str, int]:
    stem, _, suffix = name.rpartition(".")
    return (stem, int(suffix)) if suffix.isdigit() else (name, -1)


@dataclass(frozen=True)
class FilterSetting:
    """One active replication filter: the status column, its value, and how it is set."""

    column: str  # e.g. "Replicate_Ignore_Table"
    value: str  # e.g. "app.t"
    setting: str  # e.g. "replicate_ignore_table" / "IGNORE_DOMAIN_IDS"

    @property
    def is_variable(self) -> bool:
        """A MariaDB ``replicate_*`` server variable."""
        return self.setting.startswith("replicate_")

    @property
    def is_server_filter(self) -> bool:
        """A ``replicate_*`` filter of the server (my.cnf or set at runtime: MariaDB
        variable, MySQL CHANGE REPLICATION FILTER); else a CHANGE MASTER/SOURCE option
        of the channel."""
        return self.setting.lower().startswith("replicate_")

    def __str__(self) -> str:
        return f"{self.setting}={self.value}"


# client-side network errors an IO thread reports while its source is down or restarting
_NETWORK_ERRNOS = (0, 2002, 2003, 2006, 2013)


@dataclass(frozen=True)
class ReplicaStatus:
    """One replication channel, the same for every flavor.

    Built from a SHOW SLAVE/REPLICA STATUS row by :meth:`from_row`, which
    accepts MariaDB/5.7 column names (Master_Host, Slave_IO_Running, ...) and
    8.0.22+/8.4 ones (Source_Host, Replica_IO_Running, ...).  GTID columns
    are parsed: ``gtid_io_pos`` on MariaDB, ``retrieved/executed_gtid_set``
    on MySQL (``None`` where the flavor has no such column).  ``filters`` holds
    every non-empty filter column (``Replicate_*`` and the MariaDB domain-id
    lists); ``sql_delay`` is MASTER_DELAY / SOURCE_DELAY in seconds.
    """

    channel: str
    source_host: str
    source_port: int
    source_user: str
    source_server_id: int | None
    io_state: str  # "Yes", "No", "Connecting"
    sql_running: bool
    source_log_file: str  # last file the IO thread read
    read_source_log_pos: int
    relay_source_log_file: str  # file of the last event the SQL thread applied
    exec_source_log_pos: int
    seconds_behind: int | None  # None when a thread is stopped
    sql_delay: int
    last_io_errno: int
    last_io_error: str
    last_sql_errno: int
    last_sql_error: str
    using_gtid: str  # MariaDB: "No" / "Slave_Pos" / "Current_Pos"; MySQL: "No" / "Auto_Position"
    gtid_io_pos: MariaGtidPos | None
    retrieved_gtid_set: GtidSet | None
    executed_gtid_set: GtidSet | None
    # (column, value) of every non-empty filter column (see FILTER_COLUMNS); () = none
    filters: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ReplicaStatus:
        auto = _opt_int(_pick(row, "Auto_Position"))
        using = _text(_pick(row, "Using_Gtid")) or ("Auto_Position" if auto else "No")
        io_pos = _pick(row, "Gtid_IO_Pos")
        retrieved = _pick(row, "Retrieved_Gtid_Set")
        executed = _pick(row, "Executed_Gtid_Set")
        return cls(
            channel=_text(_pick(row, "Channel_Name", "Connection_name")),
            source_host=_text(_pick(row, "Source_Host", "Master_Host")),
            source_port=_opt_int(_pick(row, "Source_Port", "Master_Port")) or 0,
            source_user=_text(_pick(row, "Source_User", "Master_User")),
            source_server_id=_opt_int(_pick(row, "Source_Server_Id", "Master_Server_Id")) or None,
            io_state=_text(_pick(row, "Replica_IO_Running", "Slave_IO_Running")) or "No",
            sql_running=_text(_pick(row, "Replica_SQL_Running", "Slave_SQL_Running")) == "Yes",
            source_log_file=_text(_pick(row, "Source_Log_File", "Master_Log_File")),
            read_source_log_pos=_opt_int(_pick(row, "Read_Source_Log_Pos", "Read_Master_Log_Pos"))
            or 0,
            relay_source_log_file=_text(
                _pick(row, "Relay_Source_Log_File", "Relay_Master_Log_File")
            ),
            exec_source_log_pos=_opt_int(_pick(row, "Exec_Source_Log_Pos", "Exec_Master_Log_Pos"))
            or 0,
            seconds_behind=_opt_int(_pick(row, "Seconds_Behind_Source", "Seconds_Behind_Master")),
            sql_delay=_opt_int(_pick(row, "SQL_Delay")) or 0,
            last_io_errno=_opt_int(_pick(row, "Last_IO_Errno")) or 0,
            last_io_error=_text(_pick(row, "Last_IO_Error")),
            last_sql_errno=_opt_int(_pick(row, "Last_SQL_Errno")) or 0,
            last_sql_error=_text(_pick(row, "Last_SQL_Error")),
            using_gtid=using,
            gtid_io_pos=None if io_pos is None else MariaGtidPos.parse(_text(io_pos)),
            retrieved_gtid_set=None if retrieved is None else GtidSet.parse(_text(retrieved)),
            executed_gtid_set=None if executed is None else GtidSet.parse(_text(executed)),
            filters=_filters(row),
        )

    @property
    def io_running(self) -> bool:
        return self.io_state == "Yes"

    @property
    def running(self) -> bool:
        """Both threads running."""
        return self.io_running and self.sql_running

    @property
    def threads(self) -> tuple[str, ...]:
        """The threads that run: ``"io"`` (Yes, or still Connecting) and/or ``"sql"``."""
        return tuple(t for t, on in (("io", self.io_state != "No"), ("sql", self.sql_running))
                     if on)

    def filter_settings(self, flavor: str) -> list[FilterSetting]:
        """The active filters named as ``flavor`` ("mariadb" / "mysql") sets them."""
        return [FilterSetting(col, value, filter_setting(col, flavor)) for col, value in self.filters]

    def received_gtid(self, position: MariaGtidPos | GtidSet) -> bool:
        """True once the IO thread has RECEIVED ``position`` (it may not be applied yet).

        MariaDB: ``Gtid_IO_Pos`` reaches every domain of ``position``.  MySQL: every
        GTID of ``position`` is in ``Retrieved_Gtid_Set`` or already executed.
        """
        if isinstance(position, MariaGtidPos):
            return self.gtid_io_pos is not None and self.gtid_io_pos.contains(position)
        have = (self.retrieved_gtid_set or GtidSet()) | (self.executed_gtid_set or GtidSet())
        return position.issubset(have)

    def received_file_pos(self, log_file: str, log_pos: int) -> bool:
        """True once the IO thread has read the source's binlog up to ``log_file:log_pos``
        (binlog files are ordered by their numeric suffix: ``bin.999999`` < ``bin.1000000``)."""
        return ((_binlog_index(self.source_log_file), self.read_source_log_pos)
                >= (_binlog_index(log_file), log_pos))

    @property
    def gtid_mode(self) -> bool:
        """Replicating by GTID (MariaDB slave_pos/current_pos, MySQL auto-position)."""
        return self.using_gtid != "No"

    @property
    def reconnecting(self) -> bool:
        """The IO thread is retrying a lost or refused connection (its source restarted,
        say) with no SQL error: a state that resolves by itself within connect_retry."""
        return (self.io_state == "Connecting" and self.sql_running and not self.last_sql_errno
                and self.last_io_errno in _NETWORK_ERRNOS)

    @property
    def error(self) -> str | None:
        """The last IO/SQL error as one line, or None."""
        errs = [f"IO error {self.last_io_errno}: {self.last_io_error}" if self.last_io_errno
                else "",
                f"SQL error {self.last_sql_errno}: {self.last_sql_error}" if self.last_sql_errno
                else ""]
        return "; ".join(e for e in errs if e) or None
