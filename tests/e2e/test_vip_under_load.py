"""End to end with a floating IP (root only): the WSGI demo app connects to the VIP of a
hosts lab (every MariaDB server in its own network namespace with sshd) while roleswap
swaps the primary back and forth with the ``vip`` switch method under steady load.

Proven from the outside, as in test_swap_under_load: no request failed, every
acknowledged write is on every node (CHECKSUM TABLE agrees), never two writable
servers, held requests all answered after the resume, and writes sent after a swap
were served by the new primary (the app learns which server it reached through the
VIP from ``@@server_id``).  Plus: every swap moved the VIP, and at the end the VIP is
on the primary and on no other host.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.demo.hostslab import E2E_SUBNETS, pick_subnet, vip_holders, vip_problems
from roleswap.demo.runner import AppServer, start_wsgi
from roleswap.demo.scenario import run_scenario
from roleswap.lab import Lab, lab_down, lab_up
from roleswap.lab.hosts import _namespaces
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]

SWAPS = 6  # back and forth: db1 is the primary again at the end
RATE = 200.0


@pytest.fixture(scope="module")
def hosts_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    d = tmp_path_factory.mktemp("vipe2e") / "lab"
    subnet = os.environ.get("ROLESWAP_E2E_SUBNET") or pick_subnet(d, E2E_SUBNETS)
    started = lab_up(d, hosts=True, subnet=subnet)
    prefix = started.hosts["prefix"]
    try:
        yield started
    finally:
        lab_down(d)
        leftover = [ns for ns in _namespaces() if ns.startswith(prefix + "-")]
        assert not leftover, f"namespaces left behind: {leftover}"


@pytest.fixture
def vip_app(hosts_lab: Lab, tmp_path: Path) -> Iterator[AppServer]:
    server = start_wsgi(hosts_lab.config_path, tmp_path, workers=4, threads=8)
    yield server
    server.stop()


@pytest.mark.timeout(180)
def test_wsgi_through_the_vip(hosts_lab: Lab, vip_app: AppServer) -> None:
    assert vip_holders(hosts_lab) == ["db1"]
    res = run_scenario(hosts_lab.config_path, vip_app.url, swaps=SWAPS, rate=RATE, gap=0.4)
    problems = res.problems() + vip_problems(hosts_lab, res.consistency.primary)
    assert not problems, f"{problems}\n{res.explain()}\napp log:\n{vip_app.log_tail()}"
    assert len(res.swaps) == SWAPS and all(s.ok for s in res.swaps)
    # every swap went through the vip method and moved the VIP
    assert all(s.vip_move_ms is not None and s.vip_move_ms > 0 for s in res.swaps), res.explain()
    assert all(any(st["name"] == "vip-add" for st in s.steps) for s in res.swaps)
    assert res.load.failed == 0
    assert res.consistency.lost_total == 0 and res.consistency.acked > 0
    assert len({n.checksum for n in res.consistency.nodes}) == 1
    assert res.writable.overlaps == 0 and res.writable.samples > 100
    assert res.load.held > 0 and res.load.served_paused == 0, res.explain()
    assert res.consistency.primary == "db1" and vip_holders(hosts_lab) == ["db1"]
    # the app reached both servers through the one VIP: writes were served by db1 and db2
    assert {r.server for r in res.records if r.kind == "write" and r.ok} == {"db1", "db2"}
    assert res.load.rate >= RATE * 0.8, f"load only reached {res.load.rate:.0f} req/s"
