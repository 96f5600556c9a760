"""A local lab of real servers (MariaDB with GTID replication + Redis) for tests, demos and rehearsals."""

from roleswap.lab.lab import Lab, LabNode, lab_down, lab_status, lab_up

__all__ = ["Lab", "LabNode", "lab_down", "lab_status", "lab_up"]
