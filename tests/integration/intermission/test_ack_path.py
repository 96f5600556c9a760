"""The pause's critical path against a real Redis: who writes an app process's
acknowledging heartbeat, and how many round trips the drain wait's verifying read takes.

Every hop between threads and processes inside the pause window costs 0.15-0.5 ms on the
lab's 2-vCPU machines (a blocked thread's wake-up), so the path is kept short: the
agent's watcher acknowledges a pause it applied itself, and the full read is one MULTI
once the process ids are known.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from intermission import Controller
from intermission import protocol as p
from intermission.agent import Agent
from intermission.errors import ProtocolError
from intermission.state import Gate
from intermission.store import Store
from roleswap.lab.redis_server import RedisServer
from tests.integration.intermission.conftest import new_scope, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def agent(redis_url: str) -> Iterator[Agent]:
    scope = new_scope()
    a = Agent(Gate(scope, max_hold=5.0), scope=scope, kind="asgi", redis_url=redis_url,
              heartbeat_interval=60.0)  # no periodic beat during a test
    a.start()
    try:
        yield a
    finally:
        a.stop()


def spy_beats(agent: Agent) -> list[tuple[str, bool, str | None]]:
    """(writing thread, published an ack?, acknowledged token) of every heartbeat."""
    assert agent.store is not None
    store, heartbeat = agent.store, agent.store.heartbeat
    out: list[tuple[str, bool, str | None]] = []

    def spy(info: p.ProcessInfo, ttl: float, *, notify: bool) -> None:
        out.append((threading.current_thread().name, notify, info.acked_token))
        heartbeat(info, ttl, notify=notify)

    store.heartbeat = spy  # type: ignore[method-assign]
    return out


def acks_of(beats: list[tuple[str, bool, str | None]], token: str) -> list[str]:
    return [thread for thread, notify, acked in beats if notify and acked == token]


def test_the_watcher_acknowledges_a_pause_it_applied_once(agent: Agent, redis_url: str) -> None:
    ctl = Controller(redis_url, agent.scope)
    assert wait_for(lambda: len(ctl.status().processes) == 1, 10)
    beats = spy_beats(agent)
    h = ctl.pause("t", ttl=30)
    report = h.wait_drained(10)
    assert report.drained and [i.id for i in report.processes] == [agent.proc_id]
    time.sleep(0.2)  # a second, redundant write by the heartbeat thread would come now
    assert acks_of(beats, h.token) == ["intermission-watch"]
    h.resume()


def test_a_pause_ending_within_three_socket_timeouts_is_acknowledged_by_the_heartbeat_thread(
        agent: Agent, redis_url: str) -> None:
    """The watcher releases at the local deadline: a Redis call that may block for its
    socket timeout (1 s here) is not made from it when the deadline is that close."""
    ctl = Controller(redis_url, agent.scope)
    assert wait_for(lambda: len(ctl.status().processes) == 1, 10)
    beats = spy_beats(agent)
    h = ctl.pause("t", ttl=2.5)
    assert h.wait_drained(10).drained
    time.sleep(0.2)
    assert acks_of(beats, h.token) == ["intermission-heartbeat"]
    h.resume()


def beat(store: Store, pid: int) -> None:
    store.heartbeat(p.ProcessInfo(id=f"h:{pid}:abc", host="h", pid=pid, kind="asgi",
                                  started_at=1.0, updated_at=time.time(), in_flight=0, held=0,
                                  paused=False, acked_token=None), 30.0, notify=False)


def second_trips(client: redis.Redis) -> list[int]:
    """Counts the MGETs sent on their own (a second round trip): the pipelined one goes
    through the pipeline, not the client's method."""
    calls: list[int] = []
    mget = client.mget

    def spy(*a: object, **kw: object) -> object:
        calls.append(1)
        return mget(*a, **kw)  # type: ignore[arg-type]

    client.mget = spy  # type: ignore[method-assign]
    return calls


def test_read_all_is_one_round_trip_once_the_ids_are_known(fresh_redis: RedisServer) -> None:
    """Counted by Redis itself (a server of the test's own: nothing else runs commands)."""
    scope = new_scope()
    client = redis.Redis.from_url(fresh_redis.url)
    store = Store(client, scope)
    for i in (1, 2, 3):
        beat(store, i)
    trips = second_trips(client)
    client.config_resetstat()
    state, procs = store.read_all(())  # knowing nothing: the heartbeats in a second trip
    assert state.lease is None and [i.id for i in procs] == ["h:1:abc", "h:2:abc", "h:3:abc"]
    stats = client.info("commandstats")
    assert stats["cmdstat_exec"]["calls"] == 1 and stats["cmdstat_mget"]["calls"] == 1
    assert trips == [1]

    client.config_resetstat()
    state, procs = store.read_all()  # the ids it saw: all in the MULTI
    stats = client.info("commandstats")
    assert stats["cmdstat_exec"]["calls"] == 1 and stats["cmdstat_mget"]["calls"] == 1
    assert trips == [1] and len(procs) == 3

    # one that appeared since, one that left, one known that never existed
    beat(store, 4)
    store.remove_heartbeat("h:2:abc")
    client.config_resetstat()
    _, procs = store.read_all({"h:1:abc", "h:2:abc", "h:3:abc", "h:9:abc"})
    assert [i.id for i in procs] == ["h:1:abc", "h:3:abc", "h:4:abc"]
    assert client.info("commandstats")["cmdstat_mget"]["calls"] == 2
    assert trips == [1, 1]  # the new one's heartbeat, on its own


def test_read_all_reports_an_unreadable_lease_as_read_does(redis_url: str) -> None:
    scope = new_scope()
    client = redis.Redis.from_url(redis_url)
    store = Store(client, scope)
    client.set(p.lease_key(scope), "junk")
    with pytest.raises(ProtocolError):
        store.read()
    with pytest.raises(ProtocolError):
        store.read_all()


def test_open_acks_learns_the_process_ids_so_the_first_read_in_the_window_is_one_trip(
        fresh_redis: RedisServer) -> None:
    scope = new_scope()
    client = redis.Redis.from_url(fresh_redis.url)
    for i in (1, 2):
        beat(Store(client, scope), i)
    ctl = Controller(fresh_redis.url, scope)
    acks = ctl.open_acks()  # before the pause (roleswap: pre-sync)
    assert ctl.store.known_ids == {"h:1:abc", "h:2:abc"}
    h = ctl.pause("t", ttl=30, acks=acks)
    trips = second_trips(ctl.store.client)
    client.config_resetstat()
    report = h.wait_drained(0)  # one full read, then the verdict: not drained
    stats = client.info("commandstats")
    assert not report.drained and len(report.pending) == 2
    assert stats["cmdstat_exec"]["calls"] == 1 and stats["cmdstat_mget"]["calls"] == 1
    assert trips == []
    h.resume()
