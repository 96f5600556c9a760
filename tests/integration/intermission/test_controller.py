"""Controller semantics against a real Redis: leases, tokens, races, idempotency."""

from __future__ import annotations

import threading
import time
from typing import Any

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
    assert wait_for(lambda: ctl.read().lease is None, 10.0)
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
        assert state.ttl_remaining is not None and state.ttl_remaining > 0
        # someone else resumes it: renewal notices, does NOT re-create it, and stops
        assert Controller(redis_url, ctl.scope).resume(h.token) is ResumeOutcome.RESUMED
        assert wait_for(lambda: h.lost is not None, 5.0)
        assert "resumed by someone else" in str(h.lost) and h.reasserted == []
        with pytest.raises(LeaseLostError):
            h.renew()
    assert ctl.read().lease is None


def events(r: redis.Redis, scope: str) -> Any:
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(p.events_channel(scope))
    assert pubsub.get_message(timeout=1.0) is None  # the subscribe confirmation
    return pubsub


def next_event(pubsub: Any) -> p.Event:
    msg = pubsub.get_message(timeout=5.0)
    assert msg is not None, "no event published"
    return p.Event.decode(msg["data"])


def test_lost_key_is_reasserted_with_the_same_token(ctl: Controller, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    sub = events(r, ctl.scope)
    with ctl.pause("kept", ttl=30) as h:  # checked every min(ttl/3, 1 s) = 1 s
        assert next_event(sub).type == "pause"
        r.delete(p.lease_key(ctl.scope))  # what a Redis restart without persistence does
        assert wait_for(lambda: bool(h.reasserted), 5.0)
        assert h.lost is None and 0 < h.reasserted[0].left <= 30
        state = ctl.read()
        assert state.lease is not None and state.lease.token == h.token
        seen = [next_event(sub) for _ in range(2)]  # a renew may come first
        assert any(e.type == "pause" and e.token == h.token for e in seen), seen
        outcome = h.resume()
        assert outcome is ResumeOutcome.RESUMED
        assert h.describe(outcome) == ("the pause key was lost (Redis restarted?) and "
                                       f"re-asserted {len(h.reasserted)} time(s); resumed")
    sub.close()


def test_lost_key_replaced_by_another_pause_is_not_reasserted(ctl: Controller,
                                                              redis_url: str) -> None:
    h = ctl.pause("first", ttl=30, auto_renew=False)
    redis.Redis.from_url(redis_url).delete(p.lease_key(ctl.scope))
    other = Controller(redis_url, ctl.scope).pause("second", ttl=30, auto_renew=False)
    with pytest.raises(LeaseLostError, match=f"now holds token {other.token}"):
        h.renew()
    assert h.reasserted == [] and ctl.read().lease == other.lease
    assert h.resume() is ResumeOutcome.TOKEN_MISMATCH  # and the other pause goes on
    assert ctl.read().lease == other.lease
    assert other.resume() is ResumeOutcome.RESUMED


def test_expired_lease_is_not_reasserted_nor_resumed(ctl: Controller) -> None:
    h = ctl.pause("short", ttl=0.2, auto_renew=False)
    assert wait_for(lambda: ctl.read().lease is None, 5.0)
    time.sleep(max(0.0, h.valid_until - time.monotonic()))  # expired by our clock too
    with pytest.raises(LeaseLostError, match="expired by our clock"):
        h.renew()
    assert h.reasserted == [] and ctl.read().lease is None
    assert h.resume() is ResumeOutcome.NOT_PAUSED  # no process holds it: nothing to end
    assert ctl.read().last_resume is None


def test_resume_of_a_lost_key_still_ends_the_pause(ctl: Controller, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    h = ctl.pause("lost", ttl=30, auto_renew=False)
    sub = events(r, ctl.scope)
    r.delete(p.lease_key(ctl.scope))
    outcome = h.resume({"primary": "b"})
    assert outcome is ResumeOutcome.RESUMED_AFTER_LOSS and outcome.ended
    event = next_event(sub)
    assert (event.type, event.token, event.payload) == ("resume", h.token, {"primary": "b"})
    last = ctl.read().last_resume
    assert last is not None and last.token == h.token and last.payload == {"primary": "b"}
    assert h.resume() is ResumeOutcome.ALREADY_RESUMED
    assert ctl.resume(h.token) is ResumeOutcome.ALREADY_RESUMED
    # the token can never pause again, even by a retry of the original pause call
    with pytest.raises(LeaseLostError):
        ctl.pause("lost", ttl=30, token=h.token, auto_renew=False)
    sub.close()


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


def test_wait_drained_goes_on_while_a_lost_key_is_still_in_force(ctl: Controller,
                                                                  redis_url: str) -> None:
    h = ctl.pause("lost", ttl=30, auto_renew=False)
    redis.Redis.from_url(redis_url).delete(p.lease_key(ctl.scope))  # Redis restarted
    report = h.wait_drained(1)
    assert report.drained and report.error is None
    assert Controller(redis_url, ctl.scope).resume(h.token, in_force=True) \
        is ResumeOutcome.RESUMED_AFTER_LOSS  # someone else ended it
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


def test_roleswap_resume_step_words_a_lost_key(ctl: Controller, redis_url: str) -> None:
    from types import SimpleNamespace

    from roleswap.swap.steps_traffic import _resume

    r = redis.Redis.from_url(redis_url)

    def swap_ctx(handle: Any) -> Any:
        return SimpleNamespace(pause_handle=handle, state={"pause_token": handle.token},
                               notes=[], opts=SimpleNamespace(pause_ttl=30.0),
                               config=SimpleNamespace(scope=ctl.scope))

    h = ctl.pause("swap", ttl=30, auto_renew=False)
    r.delete(p.lease_key(ctl.scope))
    h.renew()  # what the renew loop does: re-asserts with the same token
    sctx = swap_ctx(h)
    said = _resume(sctx, {"primary": "db2"})
    assert said == "the pause key was lost (Redis restarted?) and re-asserted 1 time(s); resumed"
    assert sctx.notes == [f"intermission: {said}"]

    h = ctl.pause("swap", ttl=30, auto_renew=False)
    r.delete(p.lease_key(ctl.scope))
    sctx = swap_ctx(h)
    said = _resume(sctx, {"primary": "db2"})
    assert said.startswith("the pause key was lost (Redis restarted?); resumed anyway"), said
    assert sctx.notes == [f"intermission: {said}"]
    assert _resume(swap_ctx(h), None) == "was already resumed"
