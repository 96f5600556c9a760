"""Rehearse a primary swap in your own CI, against real servers (``pip install 'roleswap[testing]'``).

Copy this file into your test suite and run ``pytest``: the ``roleswap_cluster`` fixture
(from the plugin that roleswap[testing] registers) starts db1 (primary), db2 and db3
(replicas) and a Redis -- in containers when a Docker engine with the roleswap images
answers, else as local processes -- and removes them after the module.  Choose with
``--roleswap-server mysql-9.7``, ``--roleswap-backend docker|process``,
``--roleswap-replicas N`` (or the ini settings ``roleswap_server``, ...).

What it proves, with the roleswap command line your deploy scripts would run: a swap under
a steady stream of writes loses no acknowledged write, leaves exactly one writable
server, and leaves replication healthy.  The swap back uses the Python API
(``roleswap.Cluster``), as a runbook written in Python would.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pymysql
import pytest

from roleswap.testing import RunningCluster

# The `roleswap` command of the environment running the tests (also when its bin/ is not
# on PATH); ["roleswap", ...] does the same where it is.
ROLESWAP = [sys.executable, "-m", "roleswap"]
TABLE = "rehearsal_writes"


def roleswap(cluster: RunningCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ROLESWAP, "-c", str(cluster.config_path), *args],
                          capture_output=True, text=True, timeout=120, check=False)


class Writer(threading.Thread):
    """Inserts rows through the application account into whichever server is writable.

    An id counts as acknowledged only once COMMIT returned, as your application would
    tell its user.  A refused write (read_only, error 1290, during the swap) or a lost
    connection is not acknowledged: the writer finds the writable server again and
    goes on.
    """

    def __init__(self, cluster: RunningCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.acked: dict[int, str] = {}  # id -> key, acknowledged writes only
        self.refused = 0
        self.stopping = threading.Event()

    def _connect_to_writable(self) -> pymysql.connections.Connection:
        user, password, database = self.cluster.app_account
        for host, port in self.cluster.servers.values():
            conn = pymysql.connect(host=host, port=port, user=user, password=password,
                                   database=database, autocommit=False, connect_timeout=2,
                                   read_timeout=10, write_timeout=10)
            with conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.read_only")
                if cur.fetchone() == (0,):
                    return conn
            conn.close()
        raise pymysql.err.OperationalError(0, "no writable server right now")

    def run(self) -> None:
        conn = None
        while not self.stopping.is_set():
            key = uuid.uuid4().hex
            try:
                if conn is None:
                    conn = self._connect_to_writable()
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {TABLE} (k) VALUES (%s)", (key,))
                    new_id = cur.lastrowid
                conn.commit()
                self.acked[new_id] = key
            except pymysql.MySQLError:
                self.refused += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} writes acknowledged"
            time.sleep(0.01)

    def finish(self) -> None:
        self.stopping.set()
        self.join(30)


@pytest.fixture(scope="module")
def cluster(roleswap_cluster: RunningCluster) -> RunningCluster:
    """The module's cluster with the table the writer fills."""
    with roleswap_cluster.app() as conn, conn.cursor() as cur:  # app(): on the primary
        cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "k CHAR(32) NOT NULL UNIQUE)")
    return roleswap_cluster


def test_swap_under_writes_loses_nothing(cluster: RunningCluster) -> None:
    old = cluster.primary()  # read from the servers now, not from a cache
    new = next(name for name in sorted(cluster.servers) if name != old)
    writer = Writer(cluster)
    writer.start()
    try:
        writer.wait_for(50)  # writes are flowing
        swap = roleswap(cluster, "--from", old, "--to", new, "--yes")
        writer.wait_for(len(writer.acked) + 50)  # and flow again, to the new primary
    finally:
        writer.finish()
    assert swap.returncode == 0, swap.stdout + swap.stderr

    # exactly one writable server, the new primary
    assert cluster.writable() == [new]
    # every acknowledged write is on the new primary, with its key
    with cluster.app(new) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, k FROM {TABLE}")
        rows = dict(cur.fetchall())
    lost = {i: k for i, k in writer.acked.items() if rows.get(i) != k}
    assert not lost, f"{len(lost)} of {len(writer.acked)} acknowledged writes lost"
    # replication is healthy: every replica caught up with the new primary, roleswap agrees
    cluster.wait_replicas()
    health = roleswap(cluster, "status", "--check-health")
    assert health.returncode == 0, health.stdout + health.stderr


def test_swap_back_with_the_python_api(cluster: RunningCluster) -> None:
    """A second swap on the same cluster, through the API: the old primary became a
    healthy replica, and the API reports each step and the pause window."""
    current = cluster.primary()
    target = "db1" if current != "db1" else "db2"
    # cluster.api() is roleswap.Cluster.from_config(cluster.config_path)
    result = cluster.api().swap(current, target)  # raises on failure, with a remedy
    assert result.ok and [s.status for s in result.steps] == ["done"] * len(result.steps)
    assert result.pause_ms is not None
    assert cluster.writable() == [target]
    assert cluster.health_problems() == []


def test_fresh_cluster_file_position(roleswap_cluster_factory: Callable[..., RunningCluster]) -> None:
    """A cluster of this test's own (function scope): one replica, file/position replication."""
    fresh = roleswap_cluster_factory(replicas=1, gtid=False)
    assert sorted(fresh.servers) == ["db1", "db2"]
    swap = roleswap(fresh, "--from", "db1", "--to", "db2", "--yes")
    assert swap.returncode == 0, swap.stdout + swap.stderr
    assert fresh.primary() == "db2"
    assert fresh.health_problems() == []
