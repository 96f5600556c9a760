"""intermission through Redis Sentinel, with real redis-server + redis-sentinel: one
primary, one replica and three sentinels on loopback (roleswap.lab.redis_sentinel),
with passwords on the servers and on the sentinels.

Failovers are real: ``SENTINEL FAILOVER``, or ``kill -9`` of the master (the sentinels
agree it is down, elect a leader and promote the replica).  A failover that LOSES the
last writes (asynchronous replication) is made deterministic by detaching the replica
first (``REPLICAOF`` a closed port): it then lacks everything written afterwards when it
is promoted.  The rule under test is agent.py's: a held request is released only by a
resume of its pause or at the lease's expiry -- never because the key vanished.  Times
are measured and printed (``-s``), and only used as order, never as a speed bound.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from intermission import Controller, ResumeOutcome
from intermission.cli import cli
from roleswap.lab import procs
from roleswap.lab.redis_sentinel import SentinelGroup, start_sentinel_group
from tests.integration.intermission.conftest import AppServer, Client, wait_for, wait_processes
from tests.integration.intermission.test_redis_loss import TWO_POLLS, bodies, holding

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(procs.which("redis-sentinel") is None,
                       reason="needs redis-sentinel (apt-get install -y redis-sentinel)"),
]

MASTER_PW = "m-pw-4711"
SENTINEL_PW = "s-pw-0815"


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = start_sentinel_group(tmp_path / "sentinel", password=MASTER_PW,
                                 sentinel_password=SENTINEL_PW)
    yield group
    group.stop()


def test_controller_and_cli_follow_a_failover(sentinel: SentinelGroup) -> None:
    ctl = Controller(sentinel.url, "sentinel-ctl")
    assert MASTER_PW not in ctl.url and SENTINEL_PW not in ctl.url
    assert "master 'mymaster' via sentinels " + ",".join(sentinel.sentinel_addresses) in ctl.url
    assert not ctl.status().paused
    before = sentinel.master()
    t0 = time.monotonic()
    after = sentinel.failover(until="role")
    took = time.monotonic() - t0
    assert after != before
    t1 = time.monotonic()
    assert not ctl.status().paused  # the same client, now on the new master
    print(f"SENTINEL FAILOVER: all sentinels agree on {after.marker} after {took * 1000:.0f} ms; "
          f"the Controller's next call answered after {(time.monotonic() - t1) * 1000:.1f} ms")
    assert ctl.client.connection_pool.get_master_address() == (after.host, after.port)
    out = CliRunner().invoke(cli, ["--redis", sentinel.url, "status", "--scope", "sentinel-ctl"])
    assert out.exit_code == 0 and "not paused" in out.output, out.output


def test_wrong_sentinel_password_is_named_without_secrets(sentinel: SentinelGroup) -> None:
    bad = sentinel.url.replace(SENTINEL_PW, "wrong-pw-123")
    out = CliRunner().invoke(cli, ["--redis", bad, "status", "--scope", "x"])
    assert out.exit_code == 1
    text = out.output
    assert "cannot reach Redis at master 'mymaster' via sentinels" in text, text
    assert "sentinels run and know the master" in text
    for secret in (MASTER_PW, SENTINEL_PW, "wrong-pw-123"):
        assert secret not in text


def test_kill9_failover_during_a_pause_keeps_requests_held_until_resume(
    sentinel: SentinelGroup, servers: Callable[..., AppServer], client: Client
) -> None:
    srv = servers("wsgi", sentinel.url, worker_class="gthread", env={"IM_MAX_HOLD": "60"})
    ctl = Controller(sentinel.url, srv.scope)
    assert wait_processes(ctl, 1)
    pause = ctl.pause("redis fails over", ttl=20)  # renewed (and checked) every 1 s
    try:
        assert pause.wait_drained(5).drained
        futures = [client.fire(f"{srv.base}/?tag=before-{i}") for i in range(3)]
        assert wait_for(lambda: holding(ctl, pause.token, 3), 10.0)
        t0 = time.monotonic()
        old = sentinel.kill_master()
        new = sentinel.wait_master((old.host, old.port))
        took = time.monotonic() - t0
        futures += [client.fire(f"{srv.base}/?tag=after-{i}") for i in range(2)]
        # the app's heartbeats reach the new master, and it still holds all five
        assert wait_for(lambda: holding(ctl, pause.token, 5), 20.0), ctl.status()
        back = time.monotonic() - t0
        time.sleep(TWO_POLLS)
        assert not any(f.done() for f in futures), "requests were released inside the pause"
        assert pause.lost is None
        state = ctl.read()
        assert state.lease is not None and state.lease.token == pause.token
        assert pause.resume({"primary": "db2"}) is ResumeOutcome.RESUMED
        assert all(b["payload"] == {"primary": "db2"} for b in bodies(futures))
        print(f"kill -9 of the Redis master: {new.marker} promoted and known to all sentinels "
              f"after {took * 1000:.0f} ms; app heartbeats on it, 5 requests held, after "
              f"{back * 1000:.0f} ms; re-asserted {len(pause.reasserted)} time(s)")
    finally:
        pause.stop_renewing()
    assert "Traceback" not in srv.log_text()


def test_failover_that_lost_the_pause_key_holds_and_reasserts(
    sentinel: SentinelGroup, servers: Callable[..., AppServer], client: Client
) -> None:
    srv = servers("wsgi", sentinel.url, worker_class="gthread", env={"IM_MAX_HOLD": "60"})
    ctl = Controller(sentinel.url, srv.scope)
    assert wait_processes(ctl, 1)
    sentinel.detach_replica()  # from now on the replica misses every write
    pause = ctl.pause("failover loses the key", ttl=20)
    try:
        assert pause.wait_drained(5).drained
        futures = [client.fire(f"{srv.base}/?tag={i}") for i in range(3)]
        assert wait_for(lambda: holding(ctl, pause.token, 3), 10.0)
        sentinel.failover(until="role")  # promotes the replica that never saw the pause
        assert wait_for(lambda: bool(pause.reasserted), 10.0), "the lost key was not re-asserted"
        assert wait_for(lambda: holding(ctl, pause.token, 3), 20.0), ctl.status()
        time.sleep(TWO_POLLS)
        assert not any(f.done() for f in futures), "requests were released inside the pause"
        outcome = pause.resume({"primary": "db2"})
        assert outcome is ResumeOutcome.RESUMED
        assert re.match(r"the pause key was lost .* re-asserted \d+ time\(s\); resumed",
                        pause.describe(outcome))
        assert all(b["payload"] == {"primary": "db2"} for b in bodies(futures))
    finally:
        pause.stop_renewing()
    assert "Traceback" not in srv.log_text()


def test_failover_that_lost_an_unrenewed_pause_holds_until_its_expiry(
    sentinel: SentinelGroup, servers: Callable[..., AppServer], client: Client
) -> None:
    srv = servers("asgi", sentinel.url, env={"IM_MAX_HOLD": "60"})
    ctl = Controller(sentinel.url, srv.scope)
    assert wait_processes(ctl, 1)
    sentinel.detach_replica()
    pause = ctl.pause("nobody re-asserts", ttl=16, auto_renew=False)  # < httpx 20 s
    try:
        assert pause.wait_drained(5).drained
        futures: list[Any] = [client.fire(f"{srv.base}/?tag={i}") for i in range(3)]
        assert wait_for(lambda: holding(ctl, pause.token, 3), 10.0)
        sentinel.failover(until="role")
        assert wait_for(lambda: holding(ctl, pause.token, 3), 20.0), ctl.status()
        assert ctl.read().lease is None  # the key is gone and nobody re-created it
        # released only when the lease's own expiry comes (no resume is ever sent)
        results = [f.result(timeout=60) for f in futures]
        assert pause.valid_until <= time.monotonic()
        assert [r.status_code for r, _ in results] == [200] * 3
        assert all(r.json()["payload"] is None for r, _ in results)  # no resume payload
    finally:
        pause.stop_renewing()
    log = srv.log_text()
    assert "is gone from Redis" in log and "reached its expiry" in log, log[-2000:]
