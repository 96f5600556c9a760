"""The vip switch method on real hosts: network namespaces, sshd, MariaDB, ARP (root only).

One hosts lab per module (`lab up --hosts`, torn down by PID and prefix in finally).
Clients (the writer thread, the probes, roleswap itself) run in the root namespace and
reach the VIP through the lab's veth, so the root namespace's neighbour cache is the
one the gratuitous ARPs must update.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from roleswap.lab import Lab, lab_down, lab_up, procs
from roleswap.lab.hosts import start_sshd, vip_on
from tests.conftest import RunningLab, needs_root

pytestmark = [needs_root, pytest.mark.root]

SUBNET = os.environ.get("ROLESWAP_TEST_SUBNET", "198.18.73.0/24")
ROLESWAP = str(Path(sys.executable).parent / "roleswap")
NAMES = ("db1", "db2", "db3")


class HostsLab(RunningLab):
    @property
    def h(self) -> dict[str, Any]:
        return self.lab.hosts

    @property
    def vip(self) -> str:
        return str(self.h["vip"])

    def holders(self) -> list[str]:
        return [n for n in NAMES if vip_on(self.h["hosts"][n]["ns"], self.vip)]

    def app_connect(self, timeout: float = 1.0) -> pymysql.connections.Connection:
        lab_cfg = self.config.lab
        assert lab_cfg is not None
        return pymysql.connect(host=self.vip, port=3306, user=lab_cfg.app_user,
                               password=lab_cfg.app_password.reveal(), database="app",
                               connect_timeout=timeout, read_timeout=2, write_timeout=2,
                               ssl_disabled=True, autocommit=False)

    def kill_sshd(self, name: str) -> None:
        """Stop a host's sshd AND its live sessions (children first), all by PID."""
        node = self.lab.node(f"{name}-ssh")
        for pid in _descendants(node.pid):
            procs.stop(pid, "sshd", timeout=2)
        procs.stop(node.pid, node.marker, timeout=5)

    def restart_sshd(self, name: str) -> None:
        node = self.lab.node(f"{name}-ssh")
        if node.alive():
            return
        node.pid = start_sshd(self.dir, name, self.h["hosts"][name]["ns"], node.host)
        self.lab.save()  # so lab down stops the new PID


def _descendants(pid: int) -> list[int]:
    try:
        kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    out: list[int] = []
    for k in kids:
        out += [*_descendants(k), k]
    return out


@pytest.fixture(scope="module")
def hlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostsLab]:
    d = tmp_path_factory.mktemp("vip") / "lab"
    try:
        started: Lab = lab_up(d, hosts=True, subnet=SUBNET)
        lab = HostsLab(started)
        lab.query("db1", "CREATE TABLE app.vip_w (id INT PRIMARY KEY, at DOUBLE NOT NULL)")
        yield lab
    finally:
        lab_down(d)
        assert not any(n.startswith(Lab.load(d).hosts.get("prefix", "rs-none") + "-")
                       for n in _netns()) if (d / "lab.json").exists() else True


def _count(conn: pymysql.connections.Connection, sql: str, args: object) -> int:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return int(cur.fetchone()[0])


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def roleswap(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROLESWAP, "-c", str(config), *args], capture_output=True, text=True,
                          timeout=90, env={**os.environ, **(env or {})})


def assert_unchanged(lab: HostsLab) -> None:
    assert lab.holders() == ["db1"]
    assert lab.query("db1", "SELECT @@read_only")[0][0] == 0
    for n in ("db2", "db3"):
        assert lab.query(n, "SELECT @@read_only")[0][0] == 1
        r = lab.replica(n)
        assert r is not None and r.io_running, f"{n} replication stopped"
    c = lab.app_connect()
    try:
        with c.cursor() as cur:
            cur.execute("SELECT @@server_id")
            assert cur.fetchone() == (1,)
    finally:
        c.close()


def config_variant(lab: HostsLab, tmp: Path, server: str, line: str) -> Path:
    """A copy of the lab config with ``line`` added to [servers.<server>]."""
    text = lab.config_path.read_text().replace(f"[servers.{server}]\n", f"[servers.{server}]\n{line}\n")
    p = tmp / "variant.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


class Writer(threading.Thread):
    """Inserts through the VIP the whole time; an id is acked only after COMMIT returned."""

    def __init__(self, lab: HostsLab) -> None:
        super().__init__(daemon=True)
        self.lab, self.errors, self.stop = lab, 0, threading.Event()
        self.acked: list[int] = []

    def run(self) -> None:
        conn, n = None, 0
        while not self.stop.is_set():
            n += 1
            try:
                if conn is None:
                    conn = self.lab.app_connect()
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO vip_w VALUES (%s, %s)", (n, time.time()))
                conn.commit()
                self.acked.append(n)
            except pymysql.MySQLError:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.005)


class Sampler(threading.Thread):
    def __init__(self, lab: HostsLab) -> None:
        super().__init__(daemon=True)
        self.lab, self.stop = lab, threading.Event()
        self.samples: list[tuple[float, tuple[str, ...]]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), tuple(self.lab.holders())))


def swap(lab: HostsLab, src: str, dst: str) -> tuple[dict[str, Any], float]:
    r = roleswap(lab.config_path, "--from", src, "--to", dst, "--yes", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    move = next(float(n.split(": ")[1].split(" ms")[0]) for n in out["notes"] if "moved" in n)
    # a NEW connection right after the command returned: first try, the new primary
    c = lab.app_connect(timeout=1.0)
    with c.cursor() as cur:
        cur.execute("SELECT @@server_id")
        assert cur.fetchone() == (int(dst[2:]),)
    c.close()
    return out, move


def test_exec_command_vs_persistent_shell(hlab: HostsLab) -> None:
    from roleswap.remote import RemoteShell, ssh_target

    sh = RemoteShell(ssh_target(hlab.config, "db2"))
    sh.connect()
    try:
        fast = sorted(sh.run("true").ms for _ in range(100))[50]
        slow = sorted(sh.exec_once("true").ms for _ in range(5))[2]
    finally:
        sh.close()
    print(f"\nssh per command: persistent channel {fast:.2f} ms, exec_command {slow:.1f} ms")
    assert fast < slow / 10


def test_swap_round_trip_through_the_vip(hlab: HostsLab) -> None:
    assert_unchanged(hlab)
    writer, sampler = Writer(hlab), Sampler(hlab)
    sampler.start()
    writer.start()
    try:
        time.sleep(0.3)
        t_swap0 = time.monotonic()
        out1, move1 = swap(hlab, "db1", "db2")
        time.sleep(0.3)
        _out2, move2 = swap(hlab, "db2", "db1")
        t_swap1 = time.monotonic()
        time.sleep(0.3)
    finally:
        writer.stop.set()
        sampler.stop.set()
        writer.join(5)
        sampler.join(5)
    assert not writer.is_alive()
    # the VIP: never on two hosts; exactly one outside the swaps; none only in transit
    assert all(len(h) <= 1 for _, h in sampler.samples), [h for _, h in sampler.samples if len(h) > 1]
    outside = [h for t, h in sampler.samples if t < t_swap0 or t > t_swap1 + 0.05]
    assert outside and all(len(h) == 1 for h in outside)
    in_transit = sum(1 for _, h in sampler.samples if not h)
    # 0 acknowledged writes lost, on the new primary and every replica
    assert len(writer.acked) > 50
    pos = hlab.gtid_position("db1")
    for n in NAMES:
        if n != "db1":  # replicas: wait until they applied everything db1 has
            assert hlab.wait_gtid(n, pos, 10)
        have = {r[0] for r in hlab.query(n, "SELECT id FROM app.vip_w")}
        assert set(writer.acked) <= have, f"{n} lost {sorted(set(writer.acked) - have)[:10]}"
    vip_steps = {s["name"]: s["ms"] for s in out1["steps"] if s["name"].startswith("vip")}
    print(f"\nVIP move (remove -> new connection reaches target): db1->db2 {move1:.0f} ms, "
          f"db2->db1 {move2:.0f} ms; steps {vip_steps}; writes acked {len(writer.acked)}, "
          f"client errors/retries {writer.errors}; samples {len(sampler.samples)} "
          f"({in_transit} with the VIP in transit, 0 with two holders)")
    assert move1 < 2000 and move2 < 2000
    assert_unchanged(hlab)


def test_bad_ssh_key_is_refused(hlab: HostsLab, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cfg = config_variant(hlab, tmp_path, "db2", f'ssh_key = "{key}"')
    r = roleswap(cfg, "--from", "db1", "--to", "db2", "--yes")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "authentication refused" in r.stdout and "PRIVATE KEY" not in r.stdout + r.stderr
    assert_unchanged(hlab)


def test_unreachable_host_is_refused(hlab: HostsLab) -> None:
    try:
        hlab.kill_sshd("db2")
        r = roleswap(hlab.config_path, "--from", "db1", "--to", "db2", "--yes")
        assert r.returncode == 3, r.stdout + r.stderr
        assert "cannot connect" in r.stdout
        assert_unchanged(hlab)
    finally:
        hlab.restart_sshd("db2")


def test_missing_arping_is_refused(hlab: HostsLab, tmp_path: Path) -> None:
    # the session's PATH (remote_path) lacks /usr/bin where arping lives: nothing on the
    # system changes, and the check must name the package
    cfg = config_variant(hlab, tmp_path, "db2", 'remote_path = "/usr/sbin:/sbin"')
    r = roleswap(cfg, "--from", "db1", "--to", "db2", "--yes")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "arping (package iputils-arping)" in r.stdout
    assert_unchanged(hlab)


def test_vip_on_the_wrong_host_is_refused(hlab: HostsLab) -> None:
    ns1, ns2 = hlab.h["hosts"]["db1"]["ns"], hlab.h["hosts"]["db2"]["ns"]
    cidr = f"{hlab.vip}/{SUBNET.split('/')[1]}"
    subprocess.run(["ip", "-n", ns1, "addr", "del", cidr, "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", ns2, "addr", "add", cidr, "dev", "eth0"], check=True)
    try:
        r = roleswap(hlab.config_path, "--from", "db1", "--to", "db2", "--yes")
        assert r.returncode == 3, r.stdout + r.stderr
        assert "is not on db1 (holders: db2)" in r.stdout
        assert hlab.holders() == ["db2"]
    finally:
        subprocess.run(["ip", "-n", ns2, "addr", "del", cidr, "dev", "eth0"], check=False)
        subprocess.run(["ip", "-n", ns1, "addr", "add", cidr, "dev", "eth0"], check=False)
        subprocess.run(["ip", "netns", "exec", ns1, "arping", "-q", "-U", "-c", "1", "-w", "1",
                        "-I", "eth0", hlab.vip], check=False)
    assert_unchanged(hlab)


def test_ssh_failure_mid_swap_rolls_back(hlab: HostsLab) -> None:
    """db1's sshd and sessions die while the swap waits at the fence (held by LOCK TABLES):
    vip-remove cannot run, the swap rolls back, db1 keeps the VIP and stays writable."""
    locker = hlab.app("db1")
    # Watch for the fence through the control account: a root session polled here could
    # overlap preflight's session listing, which rightly refuses while a root session is open.
    watcher = hlab.control("db1")
    proc = None
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES app.vip_w WRITE")
        proc = subprocess.Popen([ROLESWAP, "-c", str(hlab.config_path), "--from", "db1", "--to", "db2",
                                 "--yes", "--fence-timeout", "30"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        ((sql, args),) = hlab.dialect("db1").fence(30)  # the fence's statement, as it is sent
        fence_sql = sql % args
        while not _count(watcher, "SELECT COUNT(*) FROM information_schema.processlist "
                                  "WHERE info = %s", (fence_sql,)):
            if proc.poll() is not None:  # say why (a preflight refusal, exit 3, names its check)
                raise AssertionError(f"roleswap exited {proc.returncode} before the fence: "
                                     f"{proc.communicate()[0]}")
            assert time.monotonic() < deadline, "fence never started"
            time.sleep(0.02)
        hlab.kill_sshd("db1")  # preflight passed; its session to db1 is now dead
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 4, out
        assert "vip-remove" in out and "failed" in out
        assert "rolled back" in out
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        locker.close()
        watcher.close()
        hlab.restart_sshd("db1")
    assert_unchanged(hlab)
    r = roleswap(hlab.config_path, "--from", "db1", "--to", "db2", "--check")
    assert r.returncode == 0, r.stdout + r.stderr  # and the cluster is swappable again


def test_maintain_runs_its_command_on_the_host_over_ssh(hlab: HostsLab, tmp_path: Path) -> None:
    """[maintain] run = "ssh": the command runs on db2's host (its own network namespace),
    with ROLESWAP_SERVER set, through the vip method's SSH settings."""
    cfg = tmp_path / "ssh.toml"
    cfg.write_text(hlab.config_path.read_text().replace('[maintain]', '[maintain]\nrun = "ssh"', 1)
                   .replace('run = "local"\n', "", 1))
    out = tmp_path / "where"
    res = roleswap(cfg, "maintain", "db2", "--yes", "--json",
                   "--run", f'echo "$ROLESWAP_SERVER $(ip -o -4 addr show dev eth0)" > {out}')
    assert res.returncode == 0, res.stdout + res.stderr
    text = out.read_text()
    assert text.startswith("db2 ") and f"inet {hlab.h['hosts']['db2']['address']}/" in text, text
    assert [s["name"] for s in json.loads(res.stdout)["steps"]] == ["run db2", "wait db2"]
