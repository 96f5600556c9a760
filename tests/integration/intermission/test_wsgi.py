"""The WSGI middleware under real gunicorn (gthread and sync workers) and a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from intermission import Controller, ResumeOutcome
from roleswap.lab.redis_server import RedisServer
from tests.integration.intermission.conftest import (
    AppServer,
    Client,
    module_server,
    wait_for,
    wait_processes,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def gthread(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            redis_server: RedisServer) -> AppServer:
    """One gunicorn gthread worker, 16 threads, max_hold 2 s."""
    return module_server(request, tmp_path_factory, "wsgi", redis_server.url,
                         worker_class="gthread", env={"IM_MAX_HOLD": "2"})


@pytest.fixture
def ctl(gthread: AppServer, redis_server: RedisServer) -> Iterator[Controller]:
    c = Controller(redis_server.url, gthread.scope)
    yield c
    c.resume()  # never leave the shared server paused for the next test


def test_hold_then_release_all_200_in_fifo_order(gthread: AppServer, ctl: Controller,
                                                 client: Client) -> None:
    assert wait_processes(ctl, 1)
    with ctl.pause("test", ttl=10) as pause:
        assert pause.wait_drained(10).drained
        futures = []
        for i in range(6):
            futures.append(client.fire(f"{gthread.base}/?tag={i}"))
            time.sleep(0.03)  # a known arrival order
        time.sleep(0.3)
        assert not any(f.done() for f in futures), "requests must be held, not answered"
        assert wait_for(lambda: sum(p.held for p in ctl.status().processes) == 6, 10.0)
        resumed_at = time.monotonic()
        assert pause.resume() is ResumeOutcome.RESUMED
    results = [f.result(timeout=20) for f in futures]
    assert [r.status_code for r, _ in results] == [200] * 6
    bodies = [r.json() for r, _ in results]
    assert len({b["pid"] for b in bodies}) == 1
    seqs = [b["seq"] for b in bodies]
    assert seqs == sorted(seqs), f"released out of arrival order: {seqs}"
    assert min(t for _, t in results) >= resumed_at  # none answered before the resume


def test_max_hold_gives_503_with_retry_after(gthread: AppServer, ctl: Controller) -> None:
    with ctl.pause("test", ttl=10):
        t0 = time.monotonic()
        resp = gthread.get("/")
        waited = time.monotonic() - t0
    assert resp.status_code == 503
    assert 1 <= int(resp.headers["Retry-After"]) <= 30
    assert "paused" in resp.text
    assert waited >= 1.9, waited  # max_hold is 2 s; the pause (10 s) was still on: a 503
    # the heartbeat carrying the count is pushed asynchronously, right after the 503
    assert wait_for(lambda: ctl.status().processes[0].metrics["timed_out_total"] >= 1, 10.0)


def test_exempt_path_passes_while_paused(gthread: AppServer, ctl: Controller) -> None:
    with ctl.pause("test", ttl=10) as pause:
        assert pause.wait_drained(10).drained
        resp = gthread.get("/health")
        # not held: the pause lasts until after this answer, so a held request could
        # only have ended with max_hold's 503
        assert resp.status_code == 200


def test_wait_drained_waits_for_slow_request_and_reports_stuck_one(
    gthread: AppServer, ctl: Controller, client: Client
) -> None:
    slow = client.fire(f"{gthread.base}/slow?s=0.8")
    time.sleep(0.2)  # let it get past the gate
    with ctl.pause("drain", ttl=10) as pause:
        t0 = time.monotonic()
        report = pause.wait_drained(5)
        elapsed = time.monotonic() - t0
        assert report.drained, str(report)
        assert slow.done() or wait_for(slow.done, 5.0)
        assert elapsed > 0.3, elapsed  # it waited for the slow request...
        assert report.elapsed <= elapsed  # ...and drained (not the 5 s timeout)
        assert report.in_flight_at_ack == 1  # ...which the process reported with its ack
        assert "1 request(s) were running at the pause" in str(report)
    # a stuck request: the report names the process and why, at the timeout
    stuck = client.fire(f"{gthread.base}/slow?s=2")
    time.sleep(0.2)
    with ctl.pause("drain", ttl=10) as pause:
        t0 = time.monotonic()
        report = pause.wait_drained(0.5)
        elapsed = time.monotonic() - t0
        assert not report.drained  # returned at its timeout, not when the 2 s request ended
        assert elapsed > 0.45
        assert len(report.pending) == 1
        info, why = report.pending[0]
        assert "1 request(s) still in flight" in why
    resp = stuck.result(timeout=10)[0]
    assert resp.status_code == 200
    assert info.pid == resp.json()["pid"]


def test_stale_token_resume_does_not_end_newer_pause(gthread: AppServer, ctl: Controller,
                                                     client: Client) -> None:
    old = ctl.pause("old", ttl=0.3, auto_renew=False)
    old.stop_renewing()
    assert wait_for(lambda: ctl.status().lease is None, 10.0)  # the old lease expired
    new = ctl.pause("new", ttl=10)
    try:
        # every worker has seen the new pause: a request fired before that is not held
        # (a race this test lost on a busy CI box)
        assert new.wait_drained(5).drained
        held = client.fire(f"{gthread.base}/?tag=x")
        assert ctl.resume(token=old.token) is ResumeOutcome.TOKEN_MISMATCH
        time.sleep(0.3)
        assert not held.done(), "a stale resume must not release requests"
        assert ctl.status().lease is not None
        assert ctl.status().lease.token == new.token  # type: ignore[union-attr]
    finally:
        assert new.resume() is ResumeOutcome.RESUMED
    assert held.result(timeout=20)[0].status_code == 200


def test_sync_workers_all_acknowledge_and_release(
    servers: object, redis_server: RedisServer, client: Client
) -> None:
    srv: AppServer = servers("wsgi", redis_server.url, workers=4,  # type: ignore[operator]
                             worker_class="sync")
    ctl = Controller(redis_server.url, srv.scope)
    assert wait_processes(ctl, 4), ctl.status()
    with ctl.pause("all", ttl=10) as pause:
        report = pause.wait_drained(5)
        assert report.drained, str(report)
        assert len(report.processes) == 4
        assert all(p.acked_token == pause.token for p in report.processes)
        futures = [client.fire(f"{srv.base}/?tag={i}") for i in range(4)]
        time.sleep(0.4)
        assert not any(f.done() for f in futures)
        pause.resume()
    assert [f.result(timeout=20)[0].status_code for f in futures] == [200] * 4
    assert "Traceback" not in srv.log_text()


def test_gunicorn_preload_is_fork_safe(servers: object, redis_server: RedisServer,
                                       client: Client) -> None:
    srv: AppServer = servers("wsgi", redis_server.url, workers=2,  # type: ignore[operator]
                             worker_class="sync", preload=True)
    ctl = Controller(redis_server.url, srv.scope)
    assert wait_processes(ctl, 2), ctl.status()
    pids = {p.pid for p in ctl.status().processes}
    assert srv.proc.pid not in pids  # the master (where the app was imported) is not one
    with ctl.pause("preload", ttl=10) as pause:
        assert pause.wait_drained(3).drained
        fut = client.fire(f"{srv.base}/")
        time.sleep(0.3)
        assert not fut.done()
    assert fut.result(timeout=20)[0].status_code == 200
