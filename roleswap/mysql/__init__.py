"""MySQL/MariaDB access: GTID value types, per-flavor SQL dialects, connections, topology.

Live-tested on MariaDB 10.11 and 11.8 and on MySQL 9.7 (8.4's syntax); the MySQL
5.7/8.0 dialects are written against the documented syntax and unit-tested on exact
statements only.  Every flavor difference is a field of :class:`Dialect`.
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
from roleswap.mysql.gtid import GtidSet, GtidValue, MariaGtid, MariaGtidPos, errant_mariadb, extra_gtids
from roleswap.mysql.topology import Activity, Server, Topology, read_server, read_topology

__all__ = [
    "MARIADB",
    "MYSQL57",
    "MYSQL80",
    "MYSQL84",
    "Activity",
    "Dialect",
    "GtidSet",
    "GtidValue",
    "MariaGtid",
    "MariaGtidPos",
    "ReplicaStatus",
    "Server",
    "Stmt",
    "Topology",
    "UnsupportedServerError",
    "dialect_for",
    "errant_mariadb",
    "extra_gtids",
    "read_server",
    "read_topology",
]
