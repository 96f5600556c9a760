"""roleswap.testing on the process backend, against real servers of the session's flavor
(``--server``): start_cluster, a swap under writes with nothing lost, teardown also when
the body raises, and the pytest fixture as a user gets it (a pytest run in a directory
outside the repository, with the plugin from its entry point and nothing else).

:func:`swap_under_writes` is shared with tests/containers/test_plugin_docker.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from roleswap.demo.db import SCHEMA, TABLE
from roleswap.demo.verify import check_consistency
from roleswap.lab import Lab, procs
from roleswap.testing import RunningCluster, start_cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "test_rehearse_swap.py"
ROLESWAP = [sys.executable, "-m", "roleswap"]


class AckWriter(threading.Thread):
    """Inserts into the demo table through the application account, into whichever server
    accepts writes; an id counts as acknowledged only after COMMIT returned."""

    def __init__(self, cluster: RunningCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.acked: dict[int, str] = {}
        self.refused = 0
        self.stopping = threading.Event()

    def _writable(self) -> pymysql.connections.Connection | None:
        user, password, database = self.cluster.app_account
        for host, port in self.cluster.servers.values():
            try:
                c = pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                                    autocommit=False, connect_timeout=2, read_timeout=10, ssl_disabled=True)
            except pymysql.MySQLError:
                continue
            with c.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.read_only")
                if cur.fetchone() == (0,):
                    return c
            c.close()
        return None

    def run(self) -> None:
        conn = None
        while not self.stopping.is_set():
            key = uuid.uuid4().hex
            try:
                conn = conn or self._writable()
                if conn is None:
                    time.sleep(0.005)
                    continue
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {TABLE} (k, server_id) VALUES (%s, @@server_id)", (key,))
                    new_id = int(cur.lastrowid)
                conn.commit()
                self.acked[new_id] = key
            except pymysql.MySQLError:
                self.refused += 1
                if conn is not None:
                    conn.close()
                conn = None

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, \
                f"{len(self.acked)} writes acknowledged, {self.refused} refused"
            time.sleep(0.01)


def roleswap(cluster: RunningCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ROLESWAP, "-c", str(cluster.config_path), *args], capture_output=True,
                          text=True, timeout=180, check=False)


def swap_under_writes(cluster: RunningCluster, source: str = "db1", target: str = "db2") -> dict[str, float]:
    """Swap ``source`` -> ``target`` with the CLI while AckWriter writes; assert that no
    acknowledged write is missing on any node, exactly one server is writable (the target),
    the replicas agree (CHECKSUM TABLE, GTID) and replicate from it; return timings."""
    assert cluster.primary() == source
    with cluster.app(source) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
    writer = AckWriter(cluster)
    writer.start()
    try:
        writer.wait_for(100)
        t0 = time.monotonic()
        swap = roleswap(cluster, "--from", source, "--to", target, "--yes")
        swap_s = time.monotonic() - t0
        writer.wait_for(len(writer.acked) + 100)  # writes flow again, now to the target
    finally:
        writer.stopping.set()
        writer.join(30)
    assert swap.returncode == 0, swap.stdout + swap.stderr
    assert cluster.writable() == [target]
    assert cluster.primary() == target
    result = check_consistency(cluster.config, writer.acked, timeout=30)
    assert result.ok, result.problems
    assert result.primary == target and result.lost_total == 0
    assert cluster.health_problems() == []
    health = roleswap(cluster, "status", "--check-health")
    assert health.returncode == 0, health.stdout + health.stderr
    return {"swap_s": swap_s, "acked": len(writer.acked), "refused": writer.refused}


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty directory under /tmp that start_cluster uses as its temporary directory:
    short (pytest's tmp_path is too long for the servers' unix sockets), and checked empty
    after each test (every cluster removed its directory)."""
    path = Path(tempfile.mkdtemp(prefix="rsw-test-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_process_cluster_swap_under_writes(server_flavor: str, short_tmp: Path) -> None:
    t0 = time.monotonic()
    with start_cluster(server_flavor, replicas=2, backend="process") as cluster:
        started_s = time.monotonic() - t0
        assert (cluster.backend, cluster.server, cluster.replicas) == ("process", server_flavor, 2)
        assert cluster.backend_reason == "backend=process was asked for"
        assert sorted(cluster.servers) == ["db1", "db2", "db3"]
        assert all(host == "127.0.0.1" for host, _port in cluster.servers.values())
        assert cluster.redis_url.startswith("redis://127.0.0.1:")
        assert cluster.config_path.stat().st_mode & 0o077 == 0
        assert cluster.app_account.password not in repr(cluster)
        lab = Lab.load(cluster.config_path.parent)
        pids = {n.pid: n.marker for n in lab.nodes}
        with cluster.admin("db3") as conn, conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), @@GLOBAL.read_only")
            user, read_only = cur.fetchone()
        assert str(user).startswith("root@") and int(read_only) == 1
        timings = swap_under_writes(cluster)
    assert not any(procs.alive(pid, marker) for pid, marker in pids.items())
    assert list(short_tmp.iterdir()) == []
    print(f"process cluster ({server_flavor}) started in {started_s:.1f}s; {timings}")


def test_teardown_when_the_body_raises(server_flavor: str, short_tmp: Path) -> None:
    pids: dict[int, str] = {}
    with pytest.raises(RuntimeError, match="the test failed"), \
            start_cluster(server_flavor, replicas=1, backend="process") as cluster:
        pids = {n.pid: n.marker for n in Lab.load(cluster.config_path.parent).nodes}
        assert len(pids) == 3  # db1, db2, redis
        raise RuntimeError("the test failed")
    assert not any(procs.alive(pid, marker) for pid, marker in pids.items())
    assert list(short_tmp.iterdir()) == []


FAILING_USER_TEST = '''
def test_fails_but_its_cluster_goes(roleswap_cluster):
    assert roleswap_cluster.primary() == "db1"
    assert False, f"a user's test failed on the {roleswap_cluster.backend} backend"
'''


def run_user_suite(directory: Path, tmpdir: Path, *args: str,
                   timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """pytest on a user's suite in ``directory`` (outside the repository): the example test
    file plus one test that fails; every cluster lives in ``TMPDIR=tmpdir``."""
    directory.mkdir(parents=True)
    shutil.copy(EXAMPLE, directory / "test_rehearse_swap.py")
    (directory / "test_user_failure.py").write_text(FAILING_USER_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["TMPDIR"] = str(tmpdir)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def assert_user_suite_result(res: subprocess.CompletedProcess[str], tmpdir: Path, backend: str) -> None:
    """3 passed, 1 failed on ``backend``, and no cluster left in ``tmpdir``."""
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "3 passed" in out and "1 failed" in out, out
    assert f"a user's test failed on the {backend} backend" in out, out
    assert list(tmpdir.iterdir()) == [], "a cluster was left behind"
    assert procs.servers_under(tmpdir) == []


HELD_USER_TEST = '''
import json
import time
from pathlib import Path

from roleswap.lab import Lab

def test_holds_its_cluster_until_pytest_is_terminated(roleswap_cluster_factory):
    cluster = roleswap_cluster_factory(replicas=1)
    nodes = Lab.load(cluster.config_path.parent).nodes
    Path("started.tmp").write_text(json.dumps([[n.pid, n.marker] for n in nodes]))
    Path("started.tmp").rename("started")  # whole when it appears
    time.sleep(600)
'''


def test_sigterm_to_pytest_tears_its_clusters_down(server_flavor: str, tmp_path: Path,
                                                   short_tmp: Path) -> None:
    """A CI job cancelled or timed out sends pytest SIGTERM: the run ends as with Ctrl-C
    and the fixture's teardown stops the servers (they run in sessions of their own, so
    nothing else would; before, they were all left running)."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "test_held.py").write_text(HELD_USER_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["TMPDIR"] = str(short_tmp)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                             "--roleswap-backend", "process", "--roleswap-server", server_flavor],
                            cwd=user, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    started = user / "started"
    nodes: list[list[Any]] = []
    left: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        nodes = json.loads(started.read_text()) if started.exists() else []
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        left = [pid for pid, marker in nodes if procs.alive(pid, marker)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid, marker in nodes:  # what a failure of this test leaves
            if procs.alive(pid, marker):
                os.kill(pid, signal.SIGKILL)
    assert len(nodes) == 3, f"the cluster did not start: {nodes}"  # db1, db2, redis
    assert left == [], f"servers left running after SIGTERM: {left}\n{out}"
    assert list(short_tmp.iterdir()) == [], "a cluster directory was left behind"
    assert proc.returncode == 2 and "KeyboardInterrupt" in out, out  # pytest's "interrupted"


def test_user_suite_with_the_fixture(server_flavor: str, tmp_path: Path, short_tmp: Path) -> None:
    assert ROOT not in tmp_path.parents
    res = run_user_suite(tmp_path / "user", short_tmp, "--roleswap-backend", "process",
                         "--roleswap-server", server_flavor)
    assert_user_suite_result(res, short_tmp, "process")
