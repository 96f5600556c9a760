"""End to end through HAProxy: the WSGI demo app connects to the frontend of a real
``haproxy`` in front of a loopback lab (``lab up --haproxy``) while roleswap swaps the
primary back and forth with the ``haproxy`` switch method under steady load.

Proven from the outside, as in test_swap_under_load: no request failed, every
acknowledged write is on every node (CHECKSUM TABLE agrees), never two writable
servers, held requests all answered after the resume, and writes sent after a swap
were served by the new primary (the app learns which server it reached through
HAProxy from ``@@server_id``).  Plus: every swap moved HAProxy's writes backend
(haproxy-maint, haproxy-ready), and at the end only the primary's entry is ready.
No root needed; skipped without a ``haproxy`` binary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.demo.haproxylab import frontend, haproxy_problems, haproxy_unavailable, ready_entries
from roleswap.demo.runner import AppServer, start_wsgi
from roleswap.demo.scenario import run_scenario
from roleswap.lab import Lab, lab_down
from tests.conftest import start_lab

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(haproxy_unavailable() is not None, reason=str(haproxy_unavailable()))]

SWAPS = 6  # back and forth: db1 is the primary again at the end
RATE = 200.0


@pytest.fixture(scope="module")
def haproxy_lab(tmp_path_factory: pytest.TempPathFactory, server_flavor: str) -> Iterator[Lab]:
    d = tmp_path_factory.mktemp("hae2e") / "lab"
    started = start_lab(d, server_flavor, haproxy=True)
    proxy = started.node("haproxy")
    try:
        yield started
    finally:
        lab_down(d)
        assert not proxy.alive(), f"haproxy (pid {proxy.pid}) left running"


@pytest.fixture
def haproxy_app(haproxy_lab: Lab, tmp_path: Path) -> Iterator[AppServer]:
    server = start_wsgi(haproxy_lab.config_path, tmp_path, workers=4, threads=8)
    yield server
    server.stop()


@pytest.mark.flavor_independent(
    "the swap through HAProxy runs on every flavor in tests/integration/test_haproxy.py, "
    "and an app under load on every flavor in test_swap_under_load.py")
@pytest.mark.timeout(180)
def test_wsgi_through_haproxy(haproxy_lab: Lab, haproxy_app: AppServer) -> None:
    assert ready_entries(haproxy_lab.config_path) == {"lab-haproxy": ["db1"]}
    res = run_scenario(haproxy_lab.config_path, haproxy_app.url, swaps=SWAPS, rate=RATE, gap=0.4)
    problems = res.problems() + haproxy_problems(haproxy_lab.config_path, res.consistency.primary)
    assert not problems, f"{problems}\n{res.explain()}\napp log:\n{haproxy_app.log_tail()}"
    assert len(res.swaps) == SWAPS and all(s.ok for s in res.swaps)
    # every swap went through the haproxy method: maint on the old entry, ready on the new
    for s in res.swaps:
        names = [st["name"] for st in s.steps]
        assert "haproxy-maint" in names and "haproxy-ready" in names, names
        assert names.index("fence") < names.index("haproxy-maint") < names.index("promote") \
            < names.index("haproxy-ready") < names.index("resume"), names
    assert all(s.haproxy_move_ms is not None and s.haproxy_move_ms >= 0 for s in res.swaps), res.explain()
    assert res.load.failed == 0
    assert res.consistency.lost_total == 0 and res.consistency.acked > 0
    assert len({n.checksum for n in res.consistency.nodes}) == 1
    assert res.writable.overlaps == 0 and res.writable.samples > 100
    # the pause really held requests, and none was served while its process was paused
    assert res.load.held > 0 and res.load.served_paused == 0, res.explain()
    assert res.consistency.primary == "db1"
    assert ready_entries(haproxy_lab.config_path) == {"lab-haproxy": ["db1"]}
    # the app reached both servers through the one frontend: writes were served by db1 and db2
    assert {r.server for r in res.records if r.kind == "write" and r.ok} == {"db1", "db2"}
    assert res.load.rate >= RATE * 0.8, f"load only reached {res.load.rate:.0f} req/s"
    assert frontend(haproxy_lab).startswith("127.0.0.1:")
