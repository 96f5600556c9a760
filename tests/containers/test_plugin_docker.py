"""roleswap.testing's docker backend, per server flavor: a cluster of roleswap/server
containers (testcontainers) swapped under writes with nothing lost and exactly one
writable server, every container and network gone afterwards; and a user's test file run
with ``--roleswap-backend docker``.

Skipped with the reason when ROLESWAP_DOCKER_SKIP is set (its value), or when no Docker
engine answers or the images are missing -- unless scripts/_docker.sh said the engine and
images are there (ROLESWAP_DOCKER_REQUIRED=1): then that is a failure.  ROLESWAP_DOCKER_ERROR
(set by scripts/_docker.sh when its setup failed) fails the tests with its reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roleswap.testing import SERVERS, start_cluster
from roleswap.testing.containers import LABEL
from roleswap.testing.engine import docker_client, probe
from tests.integration.test_testing_plugin import (
    ROOT,
    assert_user_suite_result,
    run_user_suite,
    swap_under_writes,
)


def require_docker(flavor: str) -> None:
    """Skip (or fail, see the module docstring) unless the docker backend can run ``flavor``."""
    if reason := os.environ.get("ROLESWAP_DOCKER_SKIP"):
        pytest.skip(reason)
    if error := os.environ.get("ROLESWAP_DOCKER_ERROR"):
        pytest.fail(f"the Docker setup failed: {error}")
    found = probe(flavor)
    if not found.usable:
        if os.environ.get("ROLESWAP_DOCKER_REQUIRED") == "1":
            pytest.fail(f"ROLESWAP_DOCKER_REQUIRED=1 but {found.reason}")
        pytest.skip(found.reason)


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """start_cluster's temporary directory, checked empty after each test."""
    path = Path(tempfile.mkdtemp(prefix="rsw-test-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def labelled(client: Any, value: str | None = None) -> tuple[list[Any], list[Any]]:
    """(containers, networks) carrying roleswap.testing's label (with ``value`` if given)."""
    label = LABEL if value is None else f"{LABEL}={value}"
    return (client.containers.list(all=True, filters={"label": label}),
            client.networks.list(filters={"label": label}))


@pytest.mark.parametrize("flavor", SERVERS)
def test_docker_cluster_swap_under_writes(flavor: str, short_tmp: Path) -> None:
    require_docker(flavor)
    client = docker_client()
    try:
        t0 = time.monotonic()
        with start_cluster(flavor, replicas=2, backend="docker") as cluster:
            started_s = time.monotonic() - t0
            assert (cluster.backend, cluster.server) == ("docker", flavor)
            assert sorted(cluster.servers) == ["db1", "db2", "db3"]
            assert all(host == "127.0.0.1" for host, _port in cluster.servers.values())
            assert cluster.config_path.stat().st_mode & 0o077 == 0
            for name, server in cluster.config.servers.items():
                assert (server.host, server.port) == cluster.servers[name]
                assert server.extra == {"replication_host": name, "replication_port": 3306}
            containers, networks = labelled(client, cluster.id)
            assert len(containers) == 4 and len(networks) == 1  # db1..db3, redis
            for c in containers:  # published on loopback only
                for bindings in c.attrs["HostConfig"]["PortBindings"].values():
                    assert all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
            with cluster.admin("db2") as conn, conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER(), @@GLOBAL.read_only")
                user, read_only = cur.fetchone()
            assert user == "root@%" and int(read_only) == 1
            timings = swap_under_writes(cluster)
        stopped_s = time.monotonic() - t0 - started_s
        assert labelled(client, cluster.id) == ([], [])
        assert list(short_tmp.iterdir()) == []
    finally:
        client.close()
    print(f"docker cluster ({flavor}) up in {started_s:.1f}s, whole test + teardown "
          f"{stopped_s:.1f}s; {timings}")


@pytest.mark.parametrize("flavor", SERVERS)
def test_user_suite_on_docker(flavor: str, tmp_path: Path, short_tmp: Path) -> None:
    require_docker(flavor)
    assert ROOT not in tmp_path.parents
    client = docker_client()
    try:
        before = {c.id for c in labelled(client)[0]}
        res = run_user_suite(tmp_path / "user", short_tmp, "--roleswap-backend", "docker",
                             "--roleswap-server", flavor)
        assert_user_suite_result(res, short_tmp, "docker")
        assert {c.id for c in labelled(client)[0]} <= before, "a container was left behind"
    finally:
        client.close()
