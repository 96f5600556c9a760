"""The agent's release decisions, without Redis: a stub store returns what a poll reads.

Rule: a paused process releases only on a resume of its token (event or record) or at
its local deadline -- never because the pause key vanished.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytest

from intermission import protocol as p
from intermission.agent import Agent
from intermission.errors import ProtocolError
from intermission.state import Gate
from intermission.store import LeaseState

pytestmark = pytest.mark.timeout(30)

TOK = "tok-aaaaaaaa"
OTHER = "tok-bbbbbbbb"


class StubStore:
    """What ``Store.read()`` returns next (or raises)."""

    def __init__(self) -> None:
        self.state: LeaseState | Exception = LeaseState(None, None, None)

    def read(self) -> LeaseState:
        if isinstance(self.state, Exception):
            raise self.state
        return self.state


def lease(token: str = TOK, ttl: float = 30.0) -> p.Lease:
    now = time.time()
    return p.Lease(token, "unit", "me@host", now, now + ttl, ttl)


def event(kind: str, token: str = TOK, ttl: float = 30.0, payload: Any = None) -> str:
    if kind == "resume":
        return p.Event("resume", token, payload=payload).encode()
    return p.Event(kind, token, round(ttl * 1000), lease(token, ttl)).encode()  # type: ignore[arg-type]


@pytest.fixture
def agent() -> Agent:
    gate = Gate("unit", max_hold=5.0)
    return Agent(gate, scope="unit", kind="wsgi", redis_url="redis://127.0.0.1:1/0")


def paused(agent: Agent, store: StubStore, ttl: float = 30.0) -> float:
    store.state = LeaseState(lease(ttl=ttl), ttl, None)
    agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.paused and agent.gate.token == TOK
    return agent.gate.deadline


def test_vanished_key_keeps_holding_until_the_local_deadline(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    store = StubStore()
    deadline = paused(agent, store)
    store.state = LeaseState(None, None, None)  # Redis restarted: no key, no record
    with caplog.at_level(logging.WARNING, "intermission"):
        for _ in range(3):
            agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.paused and agent.gate.deadline == deadline
    assert caplog.text.count("is gone from Redis") == 1  # said once, not every poll
    agent._check_expiry(deadline - 0.001)
    assert agent.gate.paused
    agent._check_expiry(deadline)
    assert not agent.gate.paused and agent.gate.open  # released at its own expiry


def test_record_of_another_token_or_unreadable_key_does_not_release(agent: Agent) -> None:
    store = StubStore()
    paused(agent, store)
    store.state = LeaseState(None, None, p.ResumeRecord(OTHER, {"x": 1}, time.time()))
    agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.paused
    store.state = ProtocolError("junk")
    agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.paused


def test_record_of_our_token_releases_with_its_payload(agent: Agent) -> None:
    got: list[Any] = []
    agent.gate.on_resume = got.append
    store = StubStore()
    paused(agent, store)
    store.state = LeaseState(None, None, p.ResumeRecord(TOK, {"primary": "b"}, time.time()))
    agent._poll(store)  # type: ignore[arg-type]
    assert not agent.gate.paused and got == [{"primary": "b"}]


def test_reasserted_lease_refreshes_the_deadline(agent: Agent) -> None:
    store = StubStore()
    first = paused(agent, store, ttl=5.0)
    store.state = LeaseState(None, None, None)
    agent._poll(store)  # type: ignore[arg-type]
    agent._on_event(event("pause", ttl=30.0))  # the pauser re-created the key
    assert agent.gate.paused and agent.gate.deadline > first


def test_never_paused_process_fails_open_on_an_absent_key(agent: Agent) -> None:
    store = StubStore()
    assert not agent.gate.synced
    agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.open and agent.gate.deadline == math.inf
    store.state = ProtocolError("junk")
    agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.open


def test_resumed_token_never_pauses_again(agent: Agent) -> None:
    store = StubStore()
    paused(agent, store)
    agent._on_event(event("resume", payload={"p": 1}))
    assert not agent.gate.paused
    agent._on_event(event("renew"))  # stale
    assert not agent.gate.paused
    # the lease re-created after its resume record was lost (Redis restart): ignored
    store.state = LeaseState(lease(), 30.0, None)
    agent._poll(store)  # type: ignore[arg-type]
    assert not agent.gate.paused and agent.gate.open
    # a new pause still pauses
    store.state = LeaseState(lease(OTHER), 30.0, None)
    agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.paused and agent.gate.token == OTHER


def test_expired_token_seen_again_with_a_real_ttl_pauses_again(agent: Agent) -> None:
    store = StubStore()
    deadline = paused(agent, store, ttl=1.0)
    agent._check_expiry(deadline)
    assert not agent.gate.paused
    store.state = LeaseState(lease(), 0.1, None)  # Redis a few ms behind our expiry
    agent._poll(store)  # type: ignore[arg-type]
    assert not agent.gate.paused
    store.state = LeaseState(lease(), 20.0, None)  # still renewed: we were cut off
    agent._poll(store)  # type: ignore[arg-type]
    assert agent.gate.paused


class BeatStore:
    """Records every heartbeat: (published an ack?, what it said)."""

    def __init__(self) -> None:
        self.beats: list[tuple[bool, p.ProcessInfo]] = []

    def heartbeat(self, info: p.ProcessInfo, ttl: float, *, notify: bool) -> None:
        self.beats.append((notify, info))


def wait_beats(store: BeatStore, n: int) -> tuple[bool, p.ProcessInfo]:
    deadline = time.monotonic() + 10
    while len(store.beats) < n and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(store.beats) >= n, store.beats
    return store.beats[n - 1]


def test_heartbeat_publishes_acks_at_once_and_batches_status(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ack (pause applied, last request in flight done) is written and published at
    once, cutting short the batching of status-only changes, which are written without
    waking drain waits."""
    import threading

    from intermission import agent as agent_mod

    store = BeatStore()
    agent.store = store  # type: ignore[assignment]
    agent.host, agent.pid, agent.proc_id, agent.started_at = "h", 1, "h:1:abc", 0.0
    agent.heartbeat_interval = 60.0  # no periodic beats during the test
    gate = agent.gate
    gate.notify = agent._changed
    gate.mark_synced()
    monkeypatch.setattr(agent_mod, "LAZY_BEAT_DELAY", 60.0)  # status changes wait "forever"
    beat = threading.Thread(target=agent._beat, daemon=True)
    beat.start()
    try:
        assert wait_beats(store, 1)[0] is False  # the first, periodic beat
        assert gate.enter()  # one request in flight when the pause comes
        gate.apply_pause(TOK, time.monotonic() + 30)
        notify, info = wait_beats(store, 2)
        assert notify and info.acked_token == TOK and info.in_flight == 1
        held = threading.Thread(target=gate.hold_thread, daemon=True)
        held.start()
        while gate.held < 1:
            time.sleep(0.001)
        gate.leave()  # drained: written at once although the held count waits 60 s
        notify, info = wait_beats(store, 3)
        assert notify and info.in_flight == 0 and info.held == 1
        monkeypatch.setattr(agent_mod, "LAZY_BEAT_DELAY", 0.0)
        gate.apply_resume(TOK, None)
        notify, info = wait_beats(store, 4)
        assert not notify and not info.paused  # status only: no drain wait is woken
        held.join(5)
        gate.leave()
    finally:
        agent._stop.set()
        agent._beat_now.set()
        beat.join(5)
