"""A process in host mode, in-process: the test plays the host agent on a real page (no
Redis: the process must never need it while the agent beats)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intermission import hostshm as hs
from intermission.wsgi import IntermissionMiddleware


class FakeAgent:
    """Beats in the page like `intermission host-agent`, and pauses / resumes it."""

    def __init__(self, directory: Path, scope: str) -> None:
        self.page = hs.Page.create(directory, scope)
        self.dir, self.scope = directory, scope
        self.stop = threading.Event()
        self.sock = hs.bind(hs.agent_socket(directory, scope))
        self.page.beat(1)
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self.stop.wait(0.1):
            self.page.beat(1)

    def pause(self, token: str = "tok_host_test1", ttl: float = 30.0) -> None:
        self.page.set_pause(token, time.monotonic_ns() + int(ttl * 1e9))
        hs.barrier()

    def resume(self, payload: bytes | None) -> None:
        self.page.clear_pause(payload)
        hs.barrier()
        for slot in self.page.slots_in_use():
            if self.page.words[self.page.slot_index(slot, hs.S_WAITING)]:
                hs.poke(self.sock, hs.slot_socket(self.dir, self.scope, slot))

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.page.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[FakeAgent]:
    a = FakeAgent(tmp_path, "hl")
    yield a
    a.close()


def _middleware(agent: FakeAgent, resumed: list[Any]) -> IntermissionMiddleware:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    mw = IntermissionMiddleware(app, scope="hl", redis_url="redis://127.0.0.1:1/0",
                                host_agent=str(agent.dir), on_resume=resumed.append, max_hold=20)
    mw.start()
    return mw


def _call(mw: IntermissionMiddleware, out: list[str]) -> None:
    status: list[str] = []
    body = mw({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda s, h: status.append(s))
    out.append(status[0] if status else "?")
    list(body)


def _gauge(name: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, {"scope": "hl"})


def test_requests_are_held_from_the_page_and_released_after_on_resume(agent: FakeAgent) -> None:
    pytest.importorskip("prometheus_client")
    resumed: list[Any] = []
    mw = _middleware(agent, resumed)
    try:
        assert mw.gate.shared is not None  # attached: no Redis agent at all
        out: list[str] = []
        _call(mw, out)
        assert out == ["200 OK"] and resumed == []
        agent.pause()
        threads = [threading.Thread(target=_call, args=(mw, out)) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while mw.gate.held < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mw.gate.held == 3 and out == ["200 OK"]
        page_held = agent.page.words[agent.page.slot_index(0, hs.S_HELD)]
        assert page_held == 3  # the agent sees them (intermission status shows its sum)
        while _gauge("intermission_held_requests") != 3.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gauge("intermission_held_requests") == 3.0  # Prometheus too, with no heartbeat
        agent.resume(b'{"primary": "db2"}')
        for t in threads:
            t.join(5)
        assert out == ["200 OK"] * 4
        assert resumed == [{"primary": "db2"}]
    finally:
        mw.stop()
    assert agent.page.slots_in_use() == []  # the slot is given back


def test_a_process_that_held_nothing_catches_up_before_its_next_request(agent: FakeAgent) -> None:
    resumed: list[Any] = []
    mw = _middleware(agent, resumed)
    try:
        agent.pause()
        agent.resume(b'{"primary": "db3"}')  # nobody was waiting: no poke at all
        out: list[str] = []
        _call(mw, out)  # held for the catch-up, then served
        assert out == ["200 OK"] and resumed == [{"primary": "db3"}]
        _call(mw, out)  # caught up: passes at once, the hook does not run again
        assert resumed == [{"primary": "db3"}]
    finally:
        mw.stop()


def test_an_expired_pause_releases_and_is_not_re_applied_by_a_late_renewal(
        agent: FakeAgent) -> None:
    resumed: list[Any] = []
    mw = _middleware(agent, resumed)
    try:
        agent.pause(ttl=0.3)
        out: list[str] = []
        t0 = time.monotonic()
        _call(mw, out)  # held until the page's deadline, then served
        assert out == ["200 OK"] and 0.2 < time.monotonic() - t0 < 5
        assert resumed == [None]  # expiry: no payload
        agent.pause(ttl=30)  # the same token renewed late: not a new pause here
        _call(mw, out)
        assert out == ["200 OK"] * 2
    finally:
        mw.stop()


def test_a_resume_followed_at_once_by_a_pause_still_delivers_its_payload(
        agent: FakeAgent) -> None:
    """Held for T1; T1 resumes with the new primary and T2 begins before this process looks:
    on_resume still runs with T1's payload, and the requests stay held for T2."""
    resumed: list[Any] = []
    mw = _middleware(agent, resumed)
    try:
        agent.pause("tok_first_1")
        out: list[str] = []
        held = threading.Thread(target=_call, args=(mw, out))
        held.start()
        deadline = time.monotonic() + 5
        while mw.gate.held < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        agent.page.clear_pause(b'{"primary": "db2"}')  # no poke between the two
        agent.page.set_pause("tok_second", time.monotonic_ns() + 30 * 10**9)
        hs.barrier()
        while resumed != [{"primary": "db2"}] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert resumed == [{"primary": "db2"}] and out == []  # delivered, still held
        agent.resume(b'{"primary": "db3"}')
        held.join(5)
        assert out == ["200 OK"] and resumed == [{"primary": "db2"}, {"primary": "db3"}]
    finally:
        mw.stop()


def test_an_idle_process_gets_the_payload_of_a_resume_it_slept_through(
        agent: FakeAgent) -> None:
    resumed: list[Any] = []
    mw = _middleware(agent, resumed)
    try:
        agent.pause("tok_first_1")
        agent.resume(b'{"primary": "db2"}')
        agent.pause("tok_second")  # this process served nothing through all of it
        out: list[str] = []
        held = threading.Thread(target=_call, args=(mw, out))
        held.start()
        deadline = time.monotonic() + 5
        while resumed != [{"primary": "db2"}] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert resumed == [{"primary": "db2"}] and out == []
        agent.resume(None)
        held.join(5)
        assert out == ["200 OK"] and resumed == [{"primary": "db2"}, None]
    finally:
        mw.stop()


def test_a_page_of_another_pid_namespace_is_refused(
        agent: FakeAgent, caplog: pytest.LogCaptureFixture) -> None:
    agent.page.words[hs.H_PIDNS] = 12345
    mw = _middleware(agent, [])
    try:
        assert mw.gate.shared is None and mw.agent.fallback is not None  # type: ignore[union-attr]
        assert "another PID namespace" in caplog.text
    finally:
        mw.stop()
