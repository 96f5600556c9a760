"""The lab engine of each kind (imported lazily: only the kind a lab runs is loaded)."""

from __future__ import annotations

from roleswap.errors import LabError
from roleswap.lab.node import Engine


def engine_for(kind: str) -> Engine:
    """The engine of ``kind`` ("mariadb" or "mysql")."""
    if kind == "mysql":
        from roleswap.lab.mysql import MYSQL

        return MYSQL
    if kind == "mariadb":
        from roleswap.lab.mariadb import MARIADB

        return MARIADB
    raise LabError(f"no lab engine {kind!r}", remedy="use a flavor from `roleswap lab servers`")
