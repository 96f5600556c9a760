"""MySQL/MariaDB access: GTID value types, per-flavor SQL dialects, connections, topology.

Only MariaDB is tested against a live server; the MySQL 5.7/8.0/8.4 dialects
are written against the documented syntax and unit-tested on exact statements.
"""

from roleswap.mysql.dialect import (
    MARIADB,
    MYSQL57,
    MYSQL80,
    MYSQL84,
    Dialect,
    ReplicaStatus,
    Stmt,
    UnsupportedServerError,
    dialect_for,
)
from roleswap.mysql.gtid import GtidSet, MariaGtid, MariaGtidPos, errant_mariadb
from roleswap.mysql.topology import Activity, Server, Topology, read_server, read_topology

__all__ = [
    "MARIADB",
    "MYSQL57",
    "MYSQL80",
    "MYSQL84",
    "Activity",
    "Dialect",
    "GtidSet",
    "MariaGtid",
    "MariaGtidPos",
    "ReplicaStatus",
    "Server",
    "Stmt",
    "Topology",
    "UnsupportedServerError",
    "dialect_for",
    "errant_mariadb",
    "read_server",
    "read_topology",
]
