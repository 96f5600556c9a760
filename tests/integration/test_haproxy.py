"""The haproxy switch method against a real ``haproxy`` (Debian's) and a real lab.

One lab and one HAProxy per module: HAProxy listens on free 127.0.0.1 ports (a MySQL
frontend, a TCP runtime API) and a unix admin socket in its directory; its config has
one server entry per node, all but db1 ``disabled``.  Stopped by PID.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest

from roleswap.config import load_config
from roleswap.lab.haproxy_server import BACKEND, HaproxyServer, start_haproxy, use_haproxy
from roleswap.switch.haproxy_api import ApiError, RuntimeApi
from roleswap.switch.haproxy_config import Instance
from tests.conftest import RunningLab
from tests.integration.swaphelp import (
    BackgroundSwap,
    ReadOnlyWatcher,
    Writer,
    assert_same_data,
    present_ids,
    primary_of,
    roleswap,
    snapshot,
    swap,
    wait_healthy,
)

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
                                reason="needs haproxy (apt-get install -y haproxy)")


class HaLab:
    """The module's lab with a HAProxy in front of it and the config switched to it."""

    def __init__(self, lab: RunningLab, srv: HaproxyServer) -> None:
        self.lab, self.srv = lab, srv
        self.original = lab.config_path.read_text()

    def api(self) -> RuntimeApi:
        return RuntimeApi(Instance("t", BACKEND, ("127.0.0.1", self.srv.frontend),
                                   socket=str(self.srv.socket)))

    def states(self) -> dict[str, str]:
        return {n: st.state for n, st in self.api().servers().items()}

    def set_state(self, entry: str, state: str) -> None:
        self.api().write(f"set server {BACKEND}/{entry} state {state}")

    def with_config(self, text: str) -> None:
        self.lab.config_path.write_text(text)
        self.lab.config = load_config(self.lab.config_path)

    def frontend_id(self) -> int:
        assert self.lab.config.lab is not None
        c = pymysql.connect(host="127.0.0.1", port=self.srv.frontend,
                            user=self.lab.config.lab.app_user,
                            password=self.lab.config.lab.app_password.reveal(),
                            connect_timeout=2, ssl_disabled=True)
        try:
            with c.cursor() as cur:
                cur.execute("SELECT @@server_id")
                row = cur.fetchone()
                assert row is not None
                return int(row[0])
        finally:
            c.close()


@pytest.fixture(scope="module")
def ha(writes_lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    ports = {n: s.port for n, s in writes_lab.config.servers.items()}
    srv = start_haproxy(tmp_path_factory.mktemp("haproxy"), ports, "db1")
    try:
        use_haproxy(writes_lab.config_path, srv)
        writes_lab.config = load_config(writes_lab.config_path)
        yield HaLab(writes_lab, srv)
    finally:
        srv.stop()


@pytest.fixture
def clean(ha: HaLab) -> Iterator[HaLab]:
    """Each test starts and must end with db1 primary, only db1's entry ready."""
    ha.with_config(ha.original)
    if not ha.srv.alive():  # a test that stops HAProxy failed before starting it again
        ha.srv.pid = _restart(ha.srv).pid
    assert ha.states() == {"db1": "ready", "db2": "maint", "db3": "maint"}
    yield ha
    ha.with_config(ha.original)


def _fails(res_out: str, *needles: str) -> None:
    for n in needles:
        assert n in res_out, res_out


def test_preflight_refuses_wrong_backend(clean: HaLab) -> None:
    clean.with_config(clean.original.replace(f'backend = "{BACKEND}"', 'backend = "nosuch"'))
    res = roleswap(clean.lab, "--from", "db1", "--to", "db2", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    _fails(res.stdout, "no backend 'nosuch'", "fix `backend`")
    assert clean.states()["db1"] == "ready"


def test_preflight_refuses_unknown_server_entry(clean: HaLab) -> None:
    text = clean.original.replace("[servers.db2]\n", '[servers.db2]\nhaproxy_server = "mysql-b"\n')
    clean.with_config(text)
    res = roleswap(clean.lab, "--from", "db1", "--to", "db2", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    _fails(res.stdout, "no server entry mysql-b (for db2)", "haproxy_server")


def test_preflight_refuses_from_not_ready_and_to_not_maint(clean: HaLab) -> None:
    res = roleswap(clean.lab, "--from", "db2", "--to", "db1", "--yes")
    assert res.returncode == 3
    # db2 is not the primary: the core check refuses too; the haproxy lines say why
    _fails(res.stdout, "db2's entry mysql_primary/db2 is maint, not ready",
           "db1's entry mysql_primary/db1 is ready, not maint")
    clean.set_state("db3", "ready")
    try:
        res = roleswap(clean.lab, "--from", "db1", "--to", "db2", "--yes")
        assert res.returncode == 3
        _fails(res.stdout, "also routes to db3 (ready)", "state maint")
    finally:
        clean.set_state("db3", "maint")
    assert clean.states() == {"db1": "ready", "db2": "maint", "db3": "maint"}


def test_preflight_refuses_unreachable_socket(clean: HaLab, tmp_path: Path) -> None:
    clean.with_config(clean.original.replace(str(clean.srv.socket), str(tmp_path / "none.sock")))
    res = roleswap(clean.lab, "--from", "db1", "--to", "db2", "--yes")
    assert res.returncode == 3
    _fails(res.stdout, "cannot connect to HAProxy lab-haproxy's runtime API",
           "No such file", "stats socket")
    # a TCP runtime API where nothing listens
    tcp = clean.original.replace(f'socket = "{clean.srv.socket}"', 'address = "127.0.0.1:1"')
    clean.with_config(tcp)
    res = roleswap(clean.lab, "--from", "db1", "--to", "db2", "--yes")
    assert res.returncode == 3
    _fails(res.stdout, "TCP 127.0.0.1:1", "Connection refused")


@dataclass(eq=False)
class FrontendWriter(Writer):
    """A Writer that connects ONLY through HAProxy's frontend; records which server
    (server_id) acknowledged each id."""

    port: int = 0
    by_server: dict[int, int] = field(default_factory=dict)
    _sid: int = 0

    def _connect(self) -> pymysql.connections.Connection | None:
        assert self.lab.config.lab is not None
        try:
            c = pymysql.connect(host="127.0.0.1", port=self.port, user=self.lab.config.lab.app_user,
                                password=self.lab.config.lab.app_password.reveal(),
                                autocommit=False, ssl_disabled=True, connect_timeout=1,
                                read_timeout=5, write_timeout=5)
            with c.cursor() as cur:
                cur.execute("SELECT @@server_id")
                row = cur.fetchone()
            self._sid = int(row[0]) if row else 0
            return c
        except pymysql.MySQLError:
            return None

    def acknowledged(self, new_id: int, conn: pymysql.connections.Connection) -> None:
        super().acknowledged(new_id, conn)
        self.by_server[self._sid] = self.by_server.get(self._sid, 0) + 1


def _swap_with_writer(ha: HaLab, src: str, dst: str) -> tuple[dict[str, object], FrontendWriter]:
    w = FrontendWriter(ha.lab, port=ha.srv.frontend)
    watch = ReadOnlyWatcher(ha.lab)
    w.start()
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while len(w.acked) < 50:
            assert time.monotonic() < deadline, "the writer wrote nothing through HAProxy"
            time.sleep(0.01)
        code, out = swap(ha.lab, src, dst)
        assert code == 0, out
        seen = len(w.acked)
        deadline = time.monotonic() + 10
        while len(w.acked) < seen + 50:
            assert time.monotonic() < deadline, "no writes through HAProxy after the swap"
            time.sleep(0.01)
    finally:
        w.stop()
        watch.stop()
    assert watch.max_writable <= 1, watch.bad
    assert watch.samples > 0
    return out, w


def test_swap_there_and_back_through_haproxy(clean: HaLab) -> None:
    out, w = _swap_with_writer(clean, "db1", "db2")
    steps = {s["name"]: s for s in out["steps"]}
    assert steps["haproxy-maint"]["status"] == "done" and steps["haproxy-ready"]["status"] == "done"
    assert clean.states() == {"db1": "maint", "db2": "ready", "db3": "maint"}
    assert clean.frontend_id() == 2
    assert w.by_server.get(1, 0) > 0 and w.by_server.get(2, 0) > 0, w.by_server
    wait_healthy(clean.lab, "db2")
    assert set(w.acked) <= present_ids(clean.lab, "db2"), "an acknowledged write is lost"
    assert_same_data(clean.lab)
    print(f"\nhaproxy swap db1->db2: pause {out.get('pause_ms')} ms, "
          f"writes blocked {out.get('write_block_ms')} ms, writer errors {w.errors}")

    out, w = _swap_with_writer(clean, "db2", "db1")
    assert clean.states() == {"db1": "ready", "db2": "maint", "db3": "maint"}
    assert clean.frontend_id() == 1
    wait_healthy(clean.lab, "db1")
    assert set(w.acked) <= present_ids(clean.lab, "db1"), "an acknowledged write is lost"
    assert_same_data(clean.lab)
    print(f"haproxy swap db2->db1: pause {out.get('pause_ms')} ms, "
          f"writes blocked {out.get('write_block_ms')} ms, writer errors {w.errors}")


def test_two_haproxy_instances_move_together(clean: HaLab, tmp_path: Path) -> None:
    """Two HAProxy instances in one config, the second through its TCP runtime API: a
    swap moves both (maint / ready on each) and proves each frontend reaches the new
    primary; the swap back restores both."""
    ports = {n: s.port for n, s in clean.lab.config.servers.items()}
    srv2 = start_haproxy(tmp_path / "lb2", ports, "db1")
    try:
        second = (f'\n[[switch.haproxy]]\nname = "lb2"\naddress = "127.0.0.1:{srv2.admin_port}"\n'
                  f'frontend = "127.0.0.1:{srv2.frontend}"\nbackend = "{BACKEND}"\n')
        clean.with_config(clean.original + second)

        def states2() -> dict[str, str]:
            api = RuntimeApi(Instance("lb2", BACKEND, ("127.0.0.1", srv2.frontend),
                                      address=("127.0.0.1", srv2.admin_port)))
            return {n: st.state for n, st in api.servers().items()}

        code, out = swap(clean.lab, "db1", "db2")
        assert code == 0, out
        steps = {s["name"]: s["detail"] for s in out["steps"]}
        assert "lab-haproxy" in steps["haproxy-maint"] and "lb2" in steps["haproxy-maint"], steps
        assert "via lab-haproxy" in steps["haproxy-ready"] and "lb2" in steps["haproxy-ready"], steps
        assert clean.states() == states2() == {"db1": "maint", "db2": "ready", "db3": "maint"}
        wait_healthy(clean.lab, "db2")
        code, out = swap(clean.lab, "db2", "db1")
        assert code == 0, out
        assert clean.states() == states2() == {"db1": "ready", "db2": "maint", "db3": "maint"}
        wait_healthy(clean.lab, "db1")
        print(f"\ntwo HAProxy instances: {steps['haproxy-maint']}; {steps['haproxy-ready']}")
    finally:
        srv2.stop()


def test_haproxy_unreachable_mid_swap_rolls_back(clean: HaLab) -> None:
    """HAProxy dies while the swap is held just before haproxy-maint (db1 fenced): the
    step cannot reach it, nothing was sent, and the rollback is clean (exit 4)."""
    srv = clean.srv
    with BackgroundSwap(clean.lab, "db1", "db2", hold="haproxy-maint:before") as bg:
        bg.wait_for(lambda: _read_only(clean.lab, "db1"))
        srv.stop()
        bg.release()
        code, _data, printed = bg.result()
    assert code == 4, printed
    assert "cannot connect to HAProxy lab-haproxy" in printed, printed
    snap = snapshot(clean.lab)
    assert primary_of(snap) == ["db1"], snap
    wait_healthy(clean.lab, "db1")
    # restart HAProxy from its config (db1 ready) on the same ports: swappable again
    restarted = _restart(srv)
    clean.srv.pid = restarted.pid
    assert clean.states() == {"db1": "ready", "db2": "maint", "db3": "maint"}
    code, out = swap(clean.lab, "db1", "db2")
    assert code == 0, out
    code, out = swap(clean.lab, "db2", "db1")
    assert code == 0, out
    wait_healthy(clean.lab, "db1")


def test_haproxy_lost_after_maint_fails_loudly_and_recover_finishes(clean: HaLab) -> None:
    """HAProxy dies after db1's entry went to maint (the swap is held before haproxy-ready):
    the rollback cannot put db1's entry back, so it says so (exit 6, naming the instance)
    but still makes db1 writable again; once HAProxy runs again, `recover` finishes."""
    with BackgroundSwap(clean.lab, "db1", "db2", hold="haproxy-ready:before") as bg:
        bg.wait_for(lambda: clean.states()["db1"] == "maint")
        clean.srv.stop()
        bg.release()
        code, _data, printed = bg.result()
    assert code == 6, printed  # RollbackIncompleteError
    assert "rolling back failed at: haproxy-maint" in printed, printed
    assert "lab-haproxy" in printed
    assert primary_of(snapshot(clean.lab)) == ["db1"]
    clean.srv.pid = _restart(clean.srv).pid  # from haproxy.cfg: db1 ready again
    rec = roleswap(clean.lab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert clean.states() == {"db1": "ready", "db2": "maint", "db3": "maint"}
    wait_healthy(clean.lab, "db1")
    assert clean.frontend_id() == 1


@pytest.mark.parametrize("at", ["haproxy-ready:before", "haproxy-ready:after"])
def test_crash_around_haproxy_ready_then_recover(clean: HaLab, at: str) -> None:
    """roleswap is SIGKILLed with db1's entry in maint (and db2's ready or not yet): a
    fresh `roleswap recover` reads the journal and leaves exactly one entry ready, the
    one of the writable server, and HAProxy routing to it."""
    code, out = swap(clean.lab, "db1", "db2", env={"ROLESWAP_KILL_AT": at})
    assert code == -9, out
    assert clean.states()["db1"] == "maint"
    rec = roleswap(clean.lab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    (primary,) = primary_of(snapshot(clean.lab))
    states = clean.states()
    assert [e for e, st in states.items() if st == "ready"] == [primary], (states, rec.stdout)
    assert clean.frontend_id() == int(primary[2:])
    if primary != "db1":
        code, out = swap(clean.lab, primary, "db1")
        assert code == 0, out
    wait_healthy(clean.lab, "db1")


def _read_only(lab: RunningLab, name: str) -> bool:
    """@@read_only of ``name`` through the application account (a root session would be
    one that can write through read_only: preflight refuses to swap while one is open)."""
    c = lab.app(name)
    try:
        with c.cursor() as cur:
            cur.execute("SELECT @@read_only")
            row = cur.fetchone()
            return bool(row and row[0])
    finally:
        c.close()


def _restart(srv: HaproxyServer) -> HaproxyServer:
    from roleswap.lab import procs

    p = procs.spawn([procs.require("haproxy")["haproxy"], "-db", "-f", str(srv.config)],
                    srv.dir / "haproxy.log")
    new = HaproxyServer(p.pid, srv.dir, srv.frontend, srv.admin_port)
    api = RuntimeApi(Instance("t", BACKEND, ("127.0.0.1", srv.frontend), socket=str(srv.socket)))
    deadline = time.monotonic() + 10
    while True:  # the old socket file is still there: wait until HAProxy answers on it
        try:
            if api.level() == "admin" and procs.port_open("127.0.0.1", srv.frontend):
                return new
        except ApiError:
            pass
        assert time.monotonic() < deadline, procs.tail_log(srv.dir / "haproxy.log")
        time.sleep(0.01)


def test_status_shows_each_haproxy_view(clean: HaLab) -> None:
    import json

    res = roleswap(clean.lab, "status", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    (view,) = json.loads(res.stdout)["haproxy"]
    assert view["name"] == "lab-haproxy" and view["ready"] == ["db1"]
    assert {e: v["state"] for e, v in view["servers"].items()} == {
        "db1": "ready", "db2": "maint", "db3": "maint"}
    clean.set_state("db2", "ready")  # what a restart with a stale haproxy.cfg can look like
    try:
        res = roleswap(clean.lab, "status", "--check-health")
        assert res.returncode == 8
        assert "HAProxy lab-haproxy routes writes to db1, db2 (writable: db1)" in res.stdout
    finally:
        clean.set_state("db2", "maint")


def test_lab_up_haproxy_writes_a_working_config_and_down_stops_it(tmp_path: Path,
                                                                  server_flavor: str) -> None:
    from roleswap.lab import lab_down
    from tests.conftest import start_lab

    lab = start_lab(tmp_path / "lab", server_flavor, replicas=1, haproxy=True)
    try:
        cfg = load_config(lab.config_path)
        assert cfg.switch_method == "haproxy"
        node = lab.node("haproxy")
        assert node.alive() and Path(node.dir, "admin.sock").exists()
        res = roleswap(str(lab.config_path), "status")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "backend mysql_primary: db1 ready, db2 maint" in res.stdout
    finally:
        lab_down(lab.dir)
    assert not node.alive()
