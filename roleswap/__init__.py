"""roleswap: zero-downtime MySQL/MariaDB primary role swap.

The Python API (see :mod:`roleswap.api`)::

    from roleswap import Cluster

    cluster = Cluster.from_config("roleswap.toml")
    result = cluster.swap("db1", "db2")

The names below are loaded on first use, so that ``import roleswap.<module>`` (the lab,
the pytest plugin) does not pay for the whole engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("CheckResult", "Cluster", "NotConfirmedError", "RecoverReport", "SwapResult")
__all__ = ["CheckResult", "Cluster", "NotConfirmedError", "RecoverReport", "SwapResult", "__version__"]

if TYPE_CHECKING:
    from roleswap.api import CheckResult, Cluster, NotConfirmedError, RecoverReport, SwapResult


def __getattr__(name: str) -> Any:
    if name in _API:
        from roleswap import api

        return getattr(api, name)
    raise AttributeError(f"module 'roleswap' has no attribute {name!r}")
