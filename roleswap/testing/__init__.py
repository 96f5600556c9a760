"""Test clusters of real MySQL/MariaDB servers for your own CI: ``roleswap.testing``.

>>> from roleswap.testing import start_cluster
>>> with start_cluster("mariadb-10.11", replicas=2) as cluster:   # doctest: +SKIP
...     subprocess.run(["roleswap", "-c", str(cluster.config_path),
...                     "--from", "db1", "--to", "db2", "--yes"], check=True)
...     assert cluster.primary() == "db2"

Installed with ``pip install 'roleswap[testing]'``, which also registers the pytest
plugin :mod:`roleswap.testing.plugin` (fixtures ``roleswap_cluster`` and
``roleswap_cluster_factory``; options ``--roleswap-server``, ``--roleswap-backend``,
``--roleswap-replicas``).  See docs/testing.md.

Importing this package needs neither Docker nor testcontainers: only the docker
backend imports them, when it is used.
"""

from roleswap.testing.cluster import AppAccount, ClusterError, RunningCluster
from roleswap.testing.start import (
    BACKENDS,
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    MIN_REPLICAS,
    SERVERS,
    choose_backend,
    start_cluster,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_REPLICAS",
    "MAX_REPLICAS",
    "MIN_REPLICAS",
    "SERVERS",
    "AppAccount",
    "ClusterError",
    "RunningCluster",
    "choose_backend",
    "start_cluster",
]
