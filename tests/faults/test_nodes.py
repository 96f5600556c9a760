"""roleswap.lab.nodes on a real lab: kill, SIGSTOP, restart from the node's own config."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from roleswap.errors import LabError
from roleswap.lab import Lab, nodes
from tests.conftest import RunningLab
from tests.faults.harness import node_state, replication_problems, snapshot, wait_until

pytestmark = pytest.mark.faults


def test_replica_killed_and_started_again_from_its_own_config(flab: RunningLab) -> None:
    lab = flab
    cnf = Path(lab.lab.node("db3").dir) / "my.cnf"
    before_cnf = cnf.read_bytes()
    old = Lab.load(lab.dir).node("db3").pid
    assert nodes.kill_node(lab.dir, "db3") == old
    assert not nodes.node_running(lab.dir, "db3")
    assert not node_state(lab, "db3")["up"]
    with pytest.raises(LabError, match="not running"):
        nodes.kill_node(lab.dir, "db3")
    new = nodes.start_node_again(lab.dir, "db3")
    assert new != old and Lab.load(lab.dir).node("db3").pid == new  # lab down still finds it
    assert cnf.read_bytes() == before_cnf  # the config on disk is what it ran with, untouched
    with pytest.raises(LabError, match="still running"):
        nodes.start_node_again(lab.dir, "db3")
    # it answers, comes back as the replica it was, and catches up by itself
    assert wait_until(lambda: not replication_problems(snapshot(lab), "db1"), 10.0), snapshot(lab)


def test_redis_sigstop_then_restart_loses_its_data(flab: RunningLab) -> None:
    lab = flab
    node = Lab.load(lab.dir).node("redis")
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=0.5)
    client.set("roleswap-faults-probe", "1")
    nodes.kill_node(lab.dir, "redis", signal.SIGSTOP)
    try:
        assert nodes.node_running(lab.dir, "redis")  # stopped, not gone
        with pytest.raises(redis.TimeoutError):
            client.get("roleswap-faults-probe")
    finally:
        nodes.kill_node(lab.dir, "redis", signal.SIGCONT)
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=2)
    assert client.get("roleswap-faults-probe") == b"1"
    nodes.kill_node(lab.dir, "redis")
    new = nodes.start_node_again(lab.dir, "redis")
    assert new != node.pid and Lab.load(lab.dir).node("redis").port == node.port
    assert client.get("roleswap-faults-probe") is None  # no persistence: data lost
