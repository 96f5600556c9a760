"""A local lab of real servers (MariaDB 10.11 / 11.8 or MySQL 9.7 with replication + Redis)
for tests, demos and rehearsals; see roleswap.lab.flavors for the server flavors."""

from roleswap.lab.lab import Lab, LabNode, lab_down, lab_status, lab_up

__all__ = ["Lab", "LabNode", "lab_down", "lab_status", "lab_up"]
