"""Controller semantics against a real Redis: leases, tokens, races, idempotency."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from intermission import (
    Controller,
    LeaseLostError,
    PauseConflictError,
    RedisUnavailableError,
    ResumeOutcome,
)
from intermission import protocol as p
from roleswap.lab.procs import free_port
from roleswap.lab.redis_server import RedisServer
from tests.integration.intermission.conftest import new_scope, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def ctl(redis_url: str) -> Controller:
    return Controller(redis_url, new_scope())


def test_concurrent_pauses_exactly_one_wins(ctl: Controller) -> None:
    barrier = threading.Barrier(8)
    wins: list[str] = []
    conflicts: list[PauseConflictError] = []

    def attempt() -> None:
        barrier.wait()
        try:
            wins.append(ctl.pause("race", ttl=5, auto_renew=False).token)
        except PauseConflictError as exc:
            conflicts.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(wins) == 1 and len(conflicts) == 7
    assert all(c.current is not None and c.current.token == wins[0] for c in conflicts)
    assert "already paused" in str(conflicts[0]) and "intermission resume" in str(conflicts[0])
    assert ctl.resume(wins[0]) is ResumeOutcome.RESUMED


def test_duplicate_pause_same_token_is_idempotent_and_resume_once(ctl: Controller) -> None:
    a = ctl.pause("x", ttl=5, token="tok-aaaaaaaa", auto_renew=False)
    b = ctl.pause("x", ttl=5, token="tok-aaaaaaaa", auto_renew=False)  # a retry
    assert a.token == b.token
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(ctl.resume(a.token)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(o.value for o in outcomes) == ["already_resumed"] * 5 + ["resumed"]
    # a late retry of the pause must not re-pause after the resume
    with pytest.raises(LeaseLostError):
        ctl.pause("x", ttl=5, token="tok-aaaaaaaa", auto_renew=False)
    assert ctl.status().lease is None


def test_stale_resume_after_newer_pause(ctl: Controller) -> None:
    old = ctl.pause("old", ttl=0.2, auto_renew=False)
    assert wait_for(lambda: ctl.read().lease is None, 2.0)
    new = ctl.pause("new", ttl=5, auto_renew=False)
    assert ctl.resume(old.token) is ResumeOutcome.TOKEN_MISMATCH
    assert ctl.read().lease == new.lease
    assert old.resume() is ResumeOutcome.TOKEN_MISMATCH
    assert new.resume() is ResumeOutcome.RESUMED
    assert ctl.resume(new.token) is ResumeOutcome.ALREADY_RESUMED
    assert ctl.resume() is ResumeOutcome.NOT_PAUSED


def test_auto_renew_keeps_the_lease_and_stops_when_lost(ctl: Controller,
                                                        redis_url: str) -> None:
    with ctl.pause("long", ttl=0.5) as h:
        time.sleep(1.3)  # well past one TTL
        state = ctl.read()
        assert state.lease is not None and state.lease.token == h.token
        assert state.ttl_remaining is not None and state.ttl_remaining > 0.1
        # someone deletes it: renewal notices and stops, renew() raises
        redis.Redis.from_url(redis_url).delete(p.lease_key(ctl.scope))
        assert wait_for(lambda: h.lost is not None, 2.0)
        with pytest.raises(LeaseLostError):
            h.renew()
    assert ctl.read().lease is None


def test_context_manager_resumes_on_exception(ctl: Controller) -> None:
    with pytest.raises(RuntimeError), ctl.pause("boom", ttl=5):
        raise RuntimeError("maintenance failed")
    assert ctl.read().lease is None
    assert ctl.read().last_resume is not None


def test_attach_and_resume_by_token_from_another_controller(ctl: Controller,
                                                             redis_url: str) -> None:
    h = ctl.pause("journaled", ttl=5, auto_renew=False)
    other = Controller(redis.Redis.from_url(redis_url), ctl.scope)  # "after a crash"
    attached = other.attach(h.token)
    assert attached.lease == h.lease
    assert attached.resume({"primary": "b"}) is ResumeOutcome.RESUMED
    last = ctl.read().last_resume
    assert last is not None and last.payload == {"primary": "b"} and last.token == h.token
    with pytest.raises(LeaseLostError):
        other.attach(h.token)


def test_wait_drained_without_processes_and_after_loss(ctl: Controller) -> None:
    h = ctl.pause("empty", ttl=0.3, auto_renew=False)
    report = h.wait_drained(1)
    assert report.drained and report.processes == []
    time.sleep(0.4)
    report = h.wait_drained(1)
    assert not report.drained and report.error and "no longer active" in report.error


def test_unreachable_redis_is_a_clear_error() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    c = Controller(url, "x", socket_timeout=0.5)
    with pytest.raises(RedisUnavailableError) as info:
        c.pause("x", ttl=5)
    text = str(info.value)
    assert "s3cret" not in text and "***" in text and "redis-server" in text


def test_bad_arguments_raise_value_error(ctl: Controller, redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="ttl must be"):
        ctl.pause("x", ttl=0)
    with pytest.raises(ValueError, match="token must be"):
        ctl.pause("x", ttl=1, token="bad token")
    with pytest.raises(ValueError, match="payload must be a dict"):
        ctl.resume("tok-aaaaaaaa", payload=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope must be"):
        Controller(redis_server.url, "bad scope")
    with pytest.raises(ValueError, match="timeout must be"):
        ctl.wait_drained("tok-aaaaaaaa", -1)
