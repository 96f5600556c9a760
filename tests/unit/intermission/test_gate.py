"""The per-process gate without Redis: FIFO release, pacing, timeouts, hooks, asyncio."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest

from intermission.state import ACK, PROGRESS, RELEASED, STATUS, TIMED_OUT, Gate, Waiter

pytestmark = pytest.mark.timeout(30)


def make(**kw: Any) -> Gate:
    gate = Gate("unit", max_hold=kw.pop("max_hold", 5.0), **kw)
    gate.mark_synced()
    return gate


def hold_in_threads(gate: Gate, n: int, order: list[int]) -> list[threading.Thread]:
    lock = threading.Lock()

    def run(i: int) -> None:
        w = gate.hold_thread()
        if w.state == RELEASED:
            with lock:
                order.append(i)
            gate.leave(w.paced)

    threads = []
    for i in range(n):
        t = threading.Thread(target=run, args=(i,))
        t.start()
        threads.append(t)
        while gate.held < i + 1:  # known arrival order
            time.sleep(0.001)
    return threads


def test_open_gate_counts_in_flight() -> None:
    gate = make()
    assert gate.enter() and gate.in_flight == 1
    gate.leave()
    assert gate.in_flight == 0


def test_unsynced_gate_holds_until_synced() -> None:
    gate = Gate("unit", max_hold=5.0)
    assert not gate.enter()
    order: list[int] = []
    threads = hold_in_threads(gate, 2, order)
    gate.mark_synced()
    for t in threads:
        t.join(5)
    assert order == [0, 1]


def test_threads_are_released_fifo_after_on_resume() -> None:
    seen: list[Any] = []
    gate = make(on_resume=lambda payload: seen.append(("hook", payload, gate.held)))
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    assert not gate.enter()
    order: list[int] = []
    threads = hold_in_threads(gate, 30, order)
    assert gate.apply_resume("tok-aaaaaaaa", {"p": 1})
    for t in threads:
        t.join(5)
    assert seen == [("hook", {"p": 1}, 30)]  # the hook ran while all 30 were still held
    assert order == list(range(30))
    assert gate.held == 0 and gate.in_flight == 0 and gate.open
    assert gate.stats.released_total == 30


def test_resume_with_other_token_is_ignored() -> None:
    gate = make()
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    assert not gate.apply_resume("tok-bbbbbbbb", None)
    assert gate.paused


def test_max_hold_times_out() -> None:
    gate = make(max_hold=0.2)
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    t0 = time.monotonic()
    w = gate.hold_thread()
    assert w.state == TIMED_OUT
    assert time.monotonic() - t0 >= 0.19  # the pause never ends: only max_hold did it
    assert gate.held == 0 and gate.stats.timed_out_total == 1


def test_release_rate_paces_the_backlog_in_order() -> None:
    gate = make(release_rate=50.0)  # one every 20 ms
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    order: list[int] = []
    threads = hold_in_threads(gate, 10, order)
    t0 = time.monotonic()
    gate.apply_resume("tok-aaaaaaaa", None)
    assert not gate.enter()  # newcomers queue behind the backlog
    for t in threads:
        t.join(5)
    elapsed = time.monotonic() - t0
    assert order == list(range(10))
    assert 0.15 <= elapsed < 2.0, elapsed  # 9 gaps of 20 ms; measured 0.18 s, 10x margin
    assert wait_open(gate)


def wait_open(gate: Gate) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if gate.open:
            return True
        time.sleep(0.005)
    return False


def test_release_concurrency_limits_running_released_requests() -> None:
    gate = make(release_concurrency=2)
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    running = []
    peak = [0]
    lock = threading.Lock()

    def run() -> None:
        w = gate.hold_thread()
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.05)
        with lock:
            running.pop()
        gate.leave(w.paced)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    while gate.held < 8:
        time.sleep(0.001)
    gate.apply_resume("tok-aaaaaaaa", None)
    for t in threads:
        t.join(5)
    assert peak[0] == 2
    assert wait_open(gate)


def test_hook_timeout_does_not_block_release() -> None:
    gate = make(on_resume=lambda payload: time.sleep(5), hook_timeout=0.2)
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    t0 = time.monotonic()
    gate.apply_resume("tok-aaaaaaaa", None)
    assert time.monotonic() - t0 < 2.0 and gate.open  # the hook sleeps 5 s; measured 0.2 s


def test_hook_exception_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def boom(payload: Any) -> None:
        raise RuntimeError("pool reset failed")

    gate = make(on_resume=boom)
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    assert gate.apply_resume("tok-aaaaaaaa", None)
    assert "on_resume hook failed" in caplog.text and gate.open


def test_expiry_is_known_locally() -> None:
    gate = make()
    now = time.monotonic()
    gate.apply_pause("tok-aaaaaaaa", now + 100)
    assert gate.expired_token(now + 99.9) is None
    assert gate.expired_token(now + 100) == "tok-aaaaaaaa"
    assert 1 <= gate.retry_after() <= 30


def test_asyncio_waiters_release_in_order_from_another_thread() -> None:
    gate = make()
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    order: list[int] = []

    async def one(i: int) -> None:
        w = await gate.hold_async()
        assert w.state == RELEASED
        order.append(i)
        gate.leave()

    async def main() -> None:
        tasks = []
        for i in range(1000):
            tasks.append(asyncio.create_task(one(i)))
        while gate.held < 1000:
            await asyncio.sleep(0.001)
        threading.Thread(target=gate.apply_resume, args=("tok-aaaaaaaa", None)).start()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)

    asyncio.run(main())  # release speed: scripts/bench
    assert order == list(range(1000))
    assert gate.in_flight == 0 and gate.held == 0


def test_asyncio_timeout_and_cancel() -> None:
    gate = make(max_hold=0.1)
    gate.apply_pause("tok-aaaaaaaa", math.inf)

    async def main() -> None:
        w = await gate.hold_async()
        assert w.state == TIMED_OUT
        task = asyncio.create_task(gate.hold_async())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert gate.held == 0 and gate.stats.timed_out_total == 1


def test_reset_after_fork_state() -> None:
    gate = make()
    gate.apply_pause("tok-aaaaaaaa", math.inf)
    gate.reset()
    assert not gate.paused and not gate.synced and not gate.open and gate.held == 0


def recording(gate: Gate) -> list[int]:
    levels: list[int] = []
    gate.notify = levels.append
    return levels


def test_notify_levels_tell_a_drain_wait_what_it_needs_at_once() -> None:
    """ACK: a new pause applied, or the in-flight count reached 0 while paused (what a
    drain wait waits for).  PROGRESS: fewer in flight while paused.  STATUS: the rest."""
    gate = make()
    levels = recording(gate)
    assert gate.enter() and gate.enter()
    gate.leave()
    assert levels == []  # not paused: nobody waits for the count
    gate.apply_pause("tok-aaaaaaaa", time.monotonic() + 30)
    assert levels == [ACK]
    gate.apply_pause("tok-aaaaaaaa", time.monotonic() + 30)  # a renew: nothing new to ack
    assert levels == [ACK]
    assert gate.enter() is False
    held = threading.Thread(target=gate.hold_thread)
    held.start()
    while gate.held < 1:
        time.sleep(0.001)
    assert levels == [ACK, STATUS]  # the held count is for `intermission status` only
    gate.leave()
    assert levels == [ACK, STATUS, ACK]  # the last request in flight finished: drained
    gate.apply_resume("tok-aaaaaaaa", None)
    held.join(5)
    assert levels[3] == STATUS
    gate.leave()  # the released request finishes; not paused any more


def test_in_flight_falling_while_paused_is_progress_until_zero() -> None:
    gate = make()
    for _ in range(3):
        assert gate.enter()
    levels = recording(gate)
    gate.apply_pause("tok-aaaaaaaa", time.monotonic() + 30)
    gate.leave()
    gate.leave()
    gate.leave()
    assert levels == [ACK, PROGRESS, PROGRESS, ACK]


class RecordingExporter:
    """Stands in for the prometheus exporter: notes when hold durations are recorded."""

    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.seconds: list[float] = []

    def observe_holds(self, seconds: list[float]) -> None:
        self.order.append("observed")
        self.seconds += seconds

    def sync(self, **kw: Any) -> None:
        return None


def test_release_hands_every_request_over_before_recording_metrics() -> None:
    """With thousands released at once, the per-request metrics come after the wake-ups
    (thread events set, one loop callback scheduled), not before the first of them."""
    gate = make()
    order: list[str] = []
    exporter = RecordingExporter(order)
    gate.exporter = exporter  # type: ignore[assignment]
    loop = asyncio.new_event_loop()
    try:
        real = loop.call_soon_threadsafe

        def schedule(cb: Any, *args: Any) -> Any:
            order.append(f"scheduled {len(args[0])}")
            return real(cb, *args)

        loop.call_soon_threadsafe = schedule  # type: ignore[method-assign]
        gate.apply_pause("tok-aaaaaaaa", time.monotonic() + 30)
        waiters = [Waiter(loop) for _ in range(3)]
        threads = [Waiter() for _ in range(2)]
        gate._wake([*waiters, *threads])
        assert order == ["scheduled 3", "observed"]
        assert all(w.event is not None and w.event.is_set() for w in threads)
        assert len(exporter.seconds) == 5 and min(exporter.seconds) >= 0
    finally:
        loop.close()
