"""The haproxy method with the runtime API reached over SSH (``ssh_host``: socat on the
host), against a real sshd and a real haproxy, both on 127.0.0.1 (root: sshd needs it).

The sshd is the test's own (generated host and client keys, key-only root login, a
strict known_hosts), on a free port, stopped by PID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.config import load_config
from roleswap.lab import procs
from roleswap.lab.haproxy_server import HaproxyServer, start_haproxy, use_haproxy
from tests.conftest import RunningLab, needs_root
from tests.integration.swaphelp import roleswap, swap, wait_healthy

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (procs.which("haproxy") and procs.which("sshd") and shutil.which("socat")),
                       reason="needs haproxy, sshd and socat"),
]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    d = tmp_path_factory.mktemp("sshd")
    keygen = procs.require("ssh-keygen")["ssh-keygen"]
    for name in ("host", "client"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = procs.free_port()
    kind, blob = (d / "host.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
    (d / "sshd_config").write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}", f"HostKey {d / 'host'}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "UseDNS no", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    p = procs.spawn([procs.require("sshd")["sshd"], "-D", "-e", "-f", str(d / "sshd_config")],
                    d / "sshd.log")
    deadline = time.monotonic() + 10
    while not procs.port_open("127.0.0.1", port):
        assert p.poll() is None and time.monotonic() < deadline, procs.tail_log(d / "sshd.log")
        time.sleep(0.02)
    try:
        yield {"port": port, "key": d / "client", "known_hosts": d / "known_hosts"}
    finally:
        procs.stop(p.pid, str(d / "sshd_config"), timeout=5)


@pytest.fixture(scope="module")
def ssh_lab(writes_lab: RunningLab, sshd: dict[str, object],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningLab, HaproxyServer]]:
    ports = {n: s.port for n, s in writes_lab.config.servers.items()}
    srv = start_haproxy(tmp_path_factory.mktemp("haproxy"), ports, "db1")
    try:
        use_haproxy(writes_lab.config_path, srv)
        text = writes_lab.config_path.read_text().replace(
            'verify_timeout = 10\n',
            f'verify_timeout = 10\nssh_port = {sshd["port"]}\nssh_user = "root"\n'
            f'ssh_key = "{sshd["key"]}"\nknown_hosts = "{sshd["known_hosts"]}"\n').replace(
            f'socket = "{srv.socket}"\n', f'socket = "{srv.socket}"\nssh_host = "127.0.0.1"\n')
        writes_lab.config_path.write_text(text)
        writes_lab.config = load_config(writes_lab.config_path)
        yield writes_lab, srv
    finally:
        srv.stop()


def test_preflight_and_swaps_over_ssh(ssh_lab: tuple[RunningLab, HaproxyServer]) -> None:
    lab, _srv = ssh_lab
    (inst,) = [i for i in lab.config.switch["haproxy"]]
    assert inst["ssh_host"] == "127.0.0.1"
    code, out = swap(lab, "db1", "db2")
    assert code == 0, out
    checks = {c["name"]: c for c in out["checks"]}
    assert "(SSH)" in checks["haproxy lab-haproxy"]["message"]
    wait_healthy(lab, "db2")
    status = roleswap(lab, "status")
    assert "db1 maint, db2 ready, db3 maint" in status.stdout, status.stdout
    code, out = swap(lab, "db2", "db1")
    assert code == 0, out
    wait_healthy(lab, "db1")


def test_missing_socket_on_the_host_is_named(ssh_lab: tuple[RunningLab, HaproxyServer],
                                             tmp_path: Path) -> None:
    lab, srv = ssh_lab
    original = lab.config_path.read_text()
    try:
        lab.config_path.write_text(original.replace(str(srv.socket), str(tmp_path / "no.sock")))
        res = roleswap(lab, "--from", "db1", "--to", "db2", "--yes")
        assert res.returncode == 3, res.stdout + res.stderr
        assert "cannot reach HAProxy lab-haproxy's runtime API" in res.stdout, res.stdout
        assert "No such file" in res.stdout and "socat" in res.stdout
    finally:
        lab.config_path.write_text(original)
