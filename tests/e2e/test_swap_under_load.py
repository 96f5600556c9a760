"""End to end: real web apps (gunicorn and uvicorn, behind intermission) under steady
load while roleswap swaps the primary back and forth on a real lab.

Every test proves, from the outside: no request failed, every acknowledged write is on
every node (and CHECKSUM TABLE agrees), a read_only sampler never saw two writable
servers, every held request was answered after its process resumed, and writes
after a swap went to the new primary.  The last test is the control: the same swaps
without the pause do fail requests, so the harness can see failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.demo.runner import AppServer, start_asgi, start_wsgi
from roleswap.demo.scenario import ScenarioResult, run_scenario
from tests.conftest import RunningLab

pytestmark = [pytest.mark.slow]

SWAPS = 6  # back and forth: the lab ends with db1 as the primary again
RATE = 200.0


@pytest.fixture
def wsgi_app(module_lab: RunningLab, tmp_path: Path) -> Iterator[AppServer]:
    server = start_wsgi(module_lab.config_path, tmp_path, workers=4, threads=8)
    yield server
    server.stop()


@pytest.fixture
def asgi_app(module_lab: RunningLab, tmp_path: Path) -> Iterator[AppServer]:
    server = start_asgi(module_lab.config_path, tmp_path, workers=1)
    yield server
    server.stop()


def _assert_clean(res: ScenarioResult, server: AppServer) -> None:
    problems = res.problems()
    assert not problems, f"{problems}\n{res.explain()}\napp log:\n{server.log_tail()}"
    assert len(res.swaps) == SWAPS and all(s.ok for s in res.swaps)
    assert res.load.failed == 0
    assert res.consistency.lost_total == 0 and res.consistency.acked > 0
    assert len({n.checksum for n in res.consistency.nodes}) == 1
    assert res.writable.overlaps == 0 and res.writable.samples > 100
    # the pause really held requests (and every one of them succeeded after the resume)
    assert res.load.held > 0, res.explain()
    assert res.load.served_paused == 0
    assert res.load.rate >= RATE * 0.8, f"load only reached {res.load.rate:.0f} req/s"


@pytest.mark.flavor_independent(
    "the same swaps as test_wsgi_gunicorn_four_workers (every flavor); only how the app acks differs")
@pytest.mark.timeout(150)
def test_wsgi_gunicorn_four_workers_attached_to_a_host_agent(module_lab: RunningLab, tmp_path: Path) -> None:
    """The same, with the 4 workers attached to one `intermission host-agent`: it alone
    acknowledges each pause for them (one process of kind "host" in status), they hold
    from the shared page and release on its pokes; nothing fails, nothing is lost."""
    from intermission import Controller

    server = start_wsgi(module_lab.config_path, tmp_path, workers=4, threads=8, host_agent=True)
    try:
        assert server.host_agent is not None
        procs = Controller(server.redis_url, server.scope).status().processes
        assert [(p.kind, p.pid, p.metrics.get("processes")) for p in procs] == [
            ("host", server.host_agent.pid, 4.0)]
        # the load generator's stdlib client here (httpx in the other tests): the held
        # and pid headers must be read from both (the stdlib one used to miss them)
        res = run_scenario(module_lab.config_path, server.url, swaps=SWAPS, rate=RATE, gap=0.4,
                           client="stdlib")
        _assert_clean(res, server)
        assert res.consistency.primary == "db1"
        assert len({r.pid for r in res.records if r.held_ms is not None}) > 1  # several workers held
    finally:
        server.stop()
    assert Controller(server.redis_url, server.scope).status().processes == []  # all gone


@pytest.mark.timeout(150)
def test_wsgi_gunicorn_four_workers(module_lab: RunningLab, wsgi_app: AppServer, tmp_path: Path) -> None:
    res = run_scenario(module_lab.config_path, wsgi_app.url, swaps=SWAPS, rate=RATE, gap=0.4)
    _assert_clean(res, wsgi_app)
    assert res.consistency.primary == "db1"
    # roleswap's absolute windows (--json "windows") are on the load generator's clock: each lies
    # inside its roleswap command's run, and every held request overlaps its swap's pause window
    # (give or take the resume's way to the app processes: roleswap's window ends when the resume
    # is acknowledged, and a request sent a few ms later can still meet a process not resumed yet)
    for s in res.swaps:
        (p0, p1), (b0, b1), (r0, r1) = s.windows["pause"], s.windows["write_block"], s.windows["swap"]
        assert s.started <= r0 <= p0 <= b0 < b1 <= p1 <= r1 <= s.ended, s.windows
        odd = [(round((h.start - p0) * 1000, 1), round((h.end - p0) * 1000, 1), h.held_ms)
               for h in res.held_during(s) if not (h.start < p1 + 0.25 and h.end > p0)]
        assert not odd, f"pause window {(p1 - p0) * 1000:.1f} ms; held (sent, answered, held ms): {odd}"
    # ... and the timeline of this real run draws (scripts/demo --plot; the plot extra)
    from roleswap.demo import plot

    try:
        plot.require()
    except plot.PlotUnavailable as e:
        pytest.skip(str(e))
    png = plot.timeline(res, tmp_path / "timeline.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.flavor_independent(
    "the same swaps as test_wsgi_gunicorn_four_workers (every flavor); only the app server differs")
@pytest.mark.timeout(150)
def test_asgi_uvicorn(module_lab: RunningLab, asgi_app: AppServer) -> None:
    res = run_scenario(module_lab.config_path, asgi_app.url, swaps=SWAPS, rate=RATE, gap=0.4)
    _assert_clean(res, asgi_app)
    assert res.consistency.primary == "db1"


@pytest.mark.timeout(150)
def test_control_without_pause_requests_fail_but_nothing_is_lost(
    module_lab: RunningLab, wsgi_app: AppServer
) -> None:
    """--no-pause: writes reaching the fenced old primary fail (the app never gets a resume
    payload, it learns of the swap from its first refused write) -- the harness must see
    those failures.  read_only still guarantees no acknowledged write is lost."""
    res = run_scenario(module_lab.config_path, wsgi_app.url, swaps=2, rate=RATE, gap=0.6, pause=False)
    assert all(s.ok for s in res.swaps), res.explain()
    assert res.load.failed >= 1, res.explain()
    assert all("write" in reason for reason in res.load.failures), res.load.failures
    assert res.load.held == 0
    assert res.consistency.lost_total == 0 and not res.consistency.problems, res.consistency.problems
    assert res.writable.overlaps == 0
    problems = res.problems(allow_failed_requests=True)
    assert not problems, problems
