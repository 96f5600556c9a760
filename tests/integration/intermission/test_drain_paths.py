"""The drain wait and resume paths against a real Redis, with simulated app processes
(heartbeats written through the protocol's own Store): the ack subscription is ready
before the pause, wake-ups re-read only the processes that acked, the verdict "drained"
comes from a full read, and a resume is sent before the renew thread is joined."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from intermission import Controller, ResumeOutcome
from intermission import protocol as p
from intermission.controller import DrainReport
from intermission.store import Store
from tests.integration.intermission.conftest import new_scope, wait_for

pytestmark = pytest.mark.timeout(60)


def numsub(r: redis.Redis, channel: str) -> int:
    return int(dict(r.pubsub_numsub(channel))[channel.encode()])


def beat(store: Store, proc_id: str, *, acked: str | None = None, in_flight: int = 0,
         notify: bool = False) -> None:
    """Write the heartbeat a process with ``proc_id`` would write (and publish its ack)."""
    host, pid, _ = proc_id.split(":")
    info = p.ProcessInfo(id=proc_id, host=host, pid=int(pid), kind="asgi", started_at=1.0,
                         updated_at=time.time(), in_flight=in_flight, held=0,
                         paused=acked is not None, acked_token=acked)
    store.heartbeat(info, 30.0, notify=notify)


class Spy:
    """Records the drain wait's reads of a Store: ("full", n) or ("acked", ids)."""

    def __init__(self, store: Store) -> None:
        self.calls: list[tuple[str, Any]] = []
        read_all, read_with = store.read_all, store.read_with

        def full(known: Any = None) -> Any:
            out = read_all(known)
            self.calls.append(("full", len(out[1])))
            return out

        def acked(ids: list[str]) -> Any:
            self.calls.append(("acked", list(ids)))
            return read_with(ids)

        store.read_all = full  # type: ignore[method-assign]
        store.read_with = acked  # type: ignore[method-assign]

    def acked_ids(self) -> set[str]:
        return {i for kind, ids in self.calls if kind == "acked" for i in ids}


def in_thread(fn: Any) -> tuple[threading.Thread, list[DrainReport]]:
    out: list[DrainReport] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def test_pause_subscribes_to_acks_before_the_window_and_the_handle_keeps_it_until_resume(
        redis_url: str) -> None:
    ctl = Controller(redis_url, new_scope())
    r = redis.Redis.from_url(redis_url)
    acks = p.acks_channel(ctl.scope)
    h = ctl.pause("t", ttl=10, auto_renew=False)
    assert numsub(r, acks) == 1  # subscribed (and confirmed) before the lease was set
    assert h.wait_drained(1).drained  # no process: drained at once
    assert numsub(r, acks) == 1  # kept for the next wait (and so out of the pool)
    assert h.wait_drained(1).drained
    assert numsub(r, acks) == 1  # the same one: not a second subscription
    assert h.resume() is ResumeOutcome.RESUMED
    assert numsub(r, acks) == 0  # resume closed it
    h2 = ctl.pause("t", ttl=10, auto_renew=False)
    assert numsub(r, acks) == 1
    h2.resume()  # never waited: resume closes it
    assert numsub(r, acks) == 0
    h3 = ctl.pause("t", ttl=10, auto_renew=False, prepare_drain=False)
    assert numsub(r, acks) == 0
    h3.resume()


def test_resume_can_leave_the_subscription_for_the_caller_to_close(redis_url: str) -> None:
    ctl = Controller(redis_url, new_scope())
    r = redis.Redis.from_url(redis_url)
    acks = p.acks_channel(ctl.scope)
    h = ctl.pause("t", ttl=10, auto_renew=False)
    assert h.wait_drained(1).drained
    assert h.resume(keep_subscription=True) is ResumeOutcome.RESUMED
    assert ctl.read().lease is None  # the pause has ended ...
    assert numsub(r, acks) == 1  # ... and the subscription is still open
    h.close_subscription()
    assert numsub(r, acks) == 0
    # a second resume (already resumed by us) closes what is left by default
    h2 = ctl.pause("t2", ttl=10, auto_renew=False)
    assert h2.wait_drained(1).drained
    assert h2.resume(keep_subscription=True) is ResumeOutcome.RESUMED
    assert h2.resume() is ResumeOutcome.ALREADY_RESUMED
    assert numsub(r, acks) == 0


def test_the_pausers_next_command_after_the_wait_needs_no_new_connection(redis_url: str) -> None:
    """Closing the subscription at the wait's end handed its disconnected connection
    back to the pool; the pauser's next command (roleswap's journal write, inside the
    pause window) then connected again: ~1 ms measured.  Resume may close it."""
    ctl = Controller(redis_url, new_scope())
    r = redis.Redis.from_url(redis_url)

    def connections() -> int:
        return int(r.info("stats")["total_connections_received"])

    h = ctl.pause("t", ttl=10, auto_renew=False)
    assert h.wait_drained(1).drained
    before = connections()
    ctl.client.set(f"{ctl.scope}:probe", "1")  # as the journal write after the pause step
    ctl.client.ping()
    assert connections() == before
    h.resume()
    h2 = ctl.pause("t", ttl=10, auto_renew=False)  # an orderly pause still works after it
    assert h2.wait_drained(1).drained
    h2.close_subscription()  # a pauser leaving the pause to its TTL releases it
    assert numsub(r, p.acks_channel(ctl.scope)) == 0
    h2.resume()


def test_acks_re_read_only_the_acked_processes_and_drained_comes_from_a_full_read(
        redis_url: str) -> None:
    ctl = Controller(redis_url, new_scope())
    procs = [f"h:{i}:abc" for i in range(1, 6)]
    writer = Store(redis.Redis.from_url(redis_url), ctl.scope)
    for proc_id in procs:
        beat(writer, proc_id)
    h = ctl.pause("t", ttl=30, auto_renew=False)
    spy = Spy(ctl.store)
    t, out = in_thread(lambda: h.wait_drained(30))
    assert wait_for(lambda: spy.calls, 10)
    for proc_id in procs[:-1]:  # one process at a time: each wake-up reads just that one
        beat(writer, proc_id, acked=h.token, notify=True)
        assert wait_for(lambda proc_id=proc_id: proc_id in spy.acked_ids(), 10)
    assert not out
    calls = len(spy.calls)
    beat(writer, procs[-1], acked=h.token, notify=True)  # the last one still pending
    t.join(20)
    report = out[0]
    assert report.drained and len(report.processes) == 5
    assert spy.acked_ids() == set(procs[:-1])
    assert all(len(ids) == 1 for kind, ids in spy.calls if kind == "acked")
    # its ack went straight to the verifying full read: the verdict came from it alone
    assert spy.calls[calls:] == [("full", 5)]
    h.resume()


def test_a_process_that_appeared_during_the_wait_must_ack_too(redis_url: str) -> None:
    ctl = Controller(redis_url, new_scope())
    writer = Store(redis.Redis.from_url(redis_url), ctl.scope)
    beat(writer, "h:1:aaa")
    h = ctl.pause("t", ttl=30, auto_renew=False)
    spy = Spy(ctl.store)
    t, out = in_thread(lambda: h.wait_drained(30))
    assert wait_for(lambda: spy.calls, 10)
    beat(writer, "h:2:bbb")  # a new process, not acked yet (and nothing published)
    beat(writer, "h:1:aaa", acked=h.token, notify=True)  # the one we knew of is done
    assert wait_for(lambda: ("full", 2) in spy.calls, 10)  # seen by the verifying read
    assert not out  # not drained: h:2 has not acknowledged
    calls = len(spy.calls)
    beat(writer, "h:2:bbb", acked=h.token, in_flight=1, notify=True)
    # the only one pending acked: read at once, by the verifying full read
    assert wait_for(lambda: ("full", 2) in spy.calls[calls:], 10)
    assert not out  # acked, but a request is still in flight
    beat(writer, "h:2:bbb", acked=h.token, notify=True)
    t.join(20)
    assert out[0].drained and {i.id for i in out[0].processes} == {"h:1:aaa", "h:2:bbb"}
    h.resume()


def test_a_timed_out_wait_reports_from_a_full_read(redis_url: str) -> None:
    ctl = Controller(redis_url, new_scope())
    writer = Store(redis.Redis.from_url(redis_url), ctl.scope)
    beat(writer, "h:1:aaa")
    h = ctl.pause("t", ttl=30, auto_renew=False)
    spy = Spy(ctl.store)
    report = h.wait_drained(0.3)
    assert not report.drained and report.pending[0][1] == "has not acknowledged the pause"
    assert spy.calls[-1] == ("full", 1)
    h.resume()


def test_resume_does_not_wait_for_the_renew_thread_which_never_renews_after_it(
        redis_url: str) -> None:
    """Waiting for the renew thread's exit (a thread wake-up) is no part of the pause
    window; the thread sees the stop and exits by itself, and no renew follows the
    resume (the pause must not come back)."""
    ctl = Controller(redis_url, new_scope())
    h = ctl.pause("t", ttl=1.0)  # renewed every 0.33 s
    done = h._renew_done
    assert done is not None
    waited: list[float | None] = []
    wait = done.wait

    def spy_wait(timeout: float | None = None) -> bool:
        waited.append(timeout)
        return wait(timeout)

    done.wait = spy_wait  # type: ignore[method-assign]
    renews: list[float] = []
    set_lease = ctl.store.set_lease

    def spy_set(lease: p.Lease, *, renew: bool) -> Any:
        renews.append(time.monotonic())
        return set_lease(lease, renew=renew)

    ctl.store.set_lease = spy_set  # type: ignore[method-assign]
    assert wait_for(lambda: renews, 5)  # it renews while held
    assert h.resume() is ResumeOutcome.RESUMED
    resumed_at = time.monotonic()
    assert waited == []  # resume did not wait for the thread
    assert wait(5)  # which exits by itself
    time.sleep(0.5)  # more than a renew interval
    assert not [t for t in renews if t > resumed_at]
    assert h.lost is None and ctl.read().lease is None
    assert h.stop_renewing(0)  # already gone: nothing to wait for
