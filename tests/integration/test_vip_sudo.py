"""The vip method with ``sudo = true``: an unprivileged SSH user and the README's sudoers rules.

Changes /etc (a user, /etc/sudoers.d/<unique>), so it runs only as root AND with CI set or
ROLESWAP_TEST_SUDO=1.  Everything it creates is removed in finally, also after a failure.
The sudoers drop-in is generated from the README's example block (VIP, interface and
user substituted): if the documented commands are wrong, this test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roleswap.lab import lab_down, lab_up
from tests.conftest import is_root, needs_root
from tests.integration.test_vip import HostsLab, assert_unchanged, roleswap

ENABLED = bool(os.environ.get("CI")) or os.environ.get("ROLESWAP_TEST_SUDO") == "1"
pytestmark = [
    needs_root,
    pytest.mark.root,
    pytest.mark.skipif(is_root() and not ENABLED,
                       reason="creates a user and /etc/sudoers.d/<file>: runs only with CI set "
                              "or ROLESWAP_TEST_SUDO=1 (and as root)"),
]

SUBNET = os.environ.get("ROLESWAP_TEST_SUDO_SUBNET", "198.18.120.0/24")
README = Path(__file__).resolve().parents[2] / "README.md"
# the README example's placeholders
EX_VIP, EX_PREFIX, EX_IFACE, EX_USER, EX_ALIAS = "10.0.0.50", "24", "eth0", "roleswap", "RS_VIP"


def readme_sudoers(user: str, alias: str, vip: str, prefix: str, iface: str) -> str:
    """The README's ```sudoers block, adapted to this lab (only values are substituted)."""
    m = re.search(r"```sudoers\n(.*?)```", README.read_text(), re.S)
    assert m, "README.md has no ```sudoers example block"
    text = m.group(1)
    assert f"{EX_VIP}/{EX_PREFIX}" in text and f"dev {EX_IFACE}" in text, text
    text = text.replace(f"{EX_VIP}/{EX_PREFIX}", f"{vip}/{prefix}").replace(EX_VIP, vip)
    text = re.sub(rf"\b{EX_IFACE}\b", iface, text)
    text = re.sub(rf"\b{EX_ALIAS}\b", alias, text)  # unique: aliases are global in sudoers
    text = re.sub(rf"^{EX_USER}(?=\s)", user, text, flags=re.M)
    text = text.replace(f"/etc/sudoers.d/{EX_USER}", f"/etc/sudoers.d/{user} (roleswap test)")
    return text


@dataclass
class SudoSetup:
    user: str
    sudoers: Path
    text: str
    config: Path

    def install(self, text: str | None = None) -> None:
        """visudo-checked, then put in place atomically with mode 0440."""
        text = self.text if text is None else text
        tmp = self.sudoers.with_name(f".{self.sudoers.name}.tmp")  # ignored by @includedir ('.')
        tmp.write_text(text)
        tmp.chmod(0o440)
        try:
            r = subprocess.run(["visudo", "-cf", str(tmp)], capture_output=True, text=True)
            assert r.returncode == 0, f"visudo refused:\n{text}\n{r.stdout}{r.stderr}"
            tmp.rename(self.sudoers)
        finally:
            tmp.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def slab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostsLab]:
    d = tmp_path_factory.mktemp("vipsudo") / "lab"
    try:
        yield HostsLab(lab_up(d, hosts=True, subnet=SUBNET))
    finally:
        lab_down(d)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def _user_exists(user: str) -> bool:
    return _run("id", "-u", user).returncode == 0


def _remove_user(user: str) -> list[str]:
    """Stop the user's processes by PID (SSH sessions), then userdel -r.  Returns problems."""
    problems: list[str] = []
    for attempt in range(50):
        if not _user_exists(user):
            return problems
        pids = [int(p) for p in _run("pgrep", "-u", user).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9 if attempt > 10 else 15)
        r = _run("userdel", "-r", user)
        if r.returncode in (0, 12):  # 12: home not removed (the caller removes its parent)
            return problems
        time.sleep(0.1)
    problems.append(f"userdel -r {user} failed: {r.stderr.strip()}")
    return problems


@pytest.fixture(scope="module")
def sudo_setup(slab: HostsLab) -> Iterator[SudoSetup]:
    suffix = secrets.token_hex(3)
    user = f"rsvip{suffix}"
    sudoers = Path("/etc/sudoers.d") / user
    # checked BEFORE try: whatever exists under these names in finally is ours to remove
    assert not _user_exists(user) and not sudoers.exists(), f"{user} exists already"
    # The home cannot be inside the lab dir: that is 0700 root (it holds passwords and the
    # client key) and sshd reads ~/.ssh/authorized_keys AS the user.  A 0755 dir of our own.
    base = Path(tempfile.mkdtemp(prefix=f"{user}-"))
    home = base / "home"
    problems: list[str] = []
    try:
        base.chmod(0o755)
        # -p '*': no password, but not locked ('!'): the lab's sshd (UsePAM no) refuses locked
        r = _run("useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                 "--password", "*", "--user-group", user)
        assert r.returncode == 0, r.stderr
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, mode=0o700)
        shutil.copy(slab.dir / "ssh" / "id_ed25519.pub", ssh / "authorized_keys")
        (ssh / "authorized_keys").chmod(0o600)
        for p in (home, ssh, ssh / "authorized_keys"):
            shutil.chown(p, user, user)

        prefix = SUBNET.split("/")[1]
        text = readme_sudoers(user, f"RS_VIP_{suffix.upper()}", slab.vip, prefix,
                              str(slab.h["interface"]))
        cfg = slab.config_path.read_text()
        assert 'ssh_user = "root"\n' in cfg
        cfg = cfg.replace('ssh_user = "root"\n', f'ssh_user = "{user}"\nsudo = true\n')
        config = base / "roleswap.toml"  # root-only file in a dir the user may traverse
        config.write_text(cfg)
        config.chmod(0o600)
        setup = SudoSetup(user, sudoers, text, config)
        setup.install()
        print(f"\nsudoers drop-in {sudoers}:\n{text}")
        yield setup
    finally:
        problems += _remove_user(user)
        sudoers.unlink(missing_ok=True)
        for leftover in (Path("/run/sudo/ts") / user, Path("/var/lib/sudo/lectured") / user):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)
        assert not problems, problems
        assert not sudoers.exists() and not _user_exists(user)


def test_check_passes_with_sudo(slab: HostsLab, sudo_setup: SudoSetup) -> None:
    r = roleswap(sudo_setup.config, "--from", "db1", "--to", "db2", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"({sudo_setup.user}@" in r.stdout
    assert re.search(r"ok\s+sudo db1\s", r.stdout) and re.search(r"ok\s+sudo db2\s", r.stdout), r.stdout
    assert_unchanged(slab)


def test_swap_round_trip_through_sudo(slab: HostsLab, sudo_setup: SudoSetup) -> None:
    for src, dst in (("db1", "db2"), ("db2", "db1")):
        r = roleswap(sudo_setup.config, "--from", src, "--to", dst, "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        assert slab.holders() == [dst], r.stdout
        c = slab.app_connect(timeout=1.0)  # a NEW connection through the VIP: the new primary
        try:
            with c.cursor() as cur:
                cur.execute("SELECT @@server_id")
                assert cur.fetchone() == (int(dst[2:]),)
        finally:
            c.close()
    assert_unchanged(slab)


def test_arping_search_stays_on_its_host(slab: HostsLab, sudo_setup: SudoSetup) -> None:
    """Lab hosts share one PID space: as the sudo user (who cannot read a root process's
    /proc/PID/ns/net) db2 must not find, and kill, db1's background arping."""
    from roleswap.config import load_config
    from roleswap.remote import RemoteShell, ssh_target
    from roleswap.switch.vip_cmds import cmd_find_arping, cmd_garp_background, cmd_kill
    from roleswap.switch.vip_config import vip_settings

    cfg = load_config(sudo_setup.config)
    s = vip_settings(cfg)
    sh1, sh2 = RemoteShell(ssh_target(cfg, "db1")), RemoteShell(ssh_target(cfg, "db2"))
    try:
        assert sh1.run("id -un").out == sudo_setup.user
        sh1.check(cmd_garp_background(s, "eth0"), "background arping", privileged=True)
        deadline = time.monotonic() + 20
        while not (on1 := sh1.check(cmd_find_arping(s), "finding arping").split()):
            assert time.monotonic() < deadline, "the background arping did not start (sudo?)"
            time.sleep(0.02)
        assert sh2.check(cmd_find_arping(s), "finding arping").split() == []
        sh1.run(cmd_kill(on1), privileged=True)
        deadline = time.monotonic() + 20
        while sh1.check(cmd_find_arping(s), "finding arping").split():
            assert time.monotonic() < deadline, "sudo kill did not stop the arping"
            time.sleep(0.02)
    finally:
        sh1.close()
        sh2.close()


def test_without_sudoers_preflight_refuses(slab: HostsLab, sudo_setup: SudoSetup) -> None:
    sudo_setup.sudoers.unlink()
    try:
        r = roleswap(sudo_setup.config, "--from", "db1", "--to", "db2", "--yes")
        assert r.returncode == 3, r.stdout + r.stderr
        assert re.search(r"FAIL\s+sudo db1\s.*does not allow", r.stdout, re.I), r.stdout
        print("\n" + "\n".join(line for line in r.stdout.splitlines() if "sudo" in line))
        assert_unchanged(slab)
    finally:
        sudo_setup.install()


def test_lab_key_is_for_root_only(slab: HostsLab, tmp_path: Path) -> None:
    """The lab's sshd authorizes its client key for root only; other users need their own."""
    cfg = slab.config_path.read_text().replace('ssh_user = "root"\n', 'ssh_user = "nobody"\n')
    p = tmp_path / "nobody.toml"
    p.write_text(cfg)
    p.chmod(0o600)
    r = roleswap(p, "--from", "db1", "--to", "db2", "--check")
    assert r.returncode == 3 and "authentication refused" in r.stdout, r.stdout + r.stderr


def test_incomplete_sudoers_is_refused(slab: HostsLab, sudo_setup: SudoSetup) -> None:
    """Without the background arping rule the swap would run with no repeated GARPs and no
    error (its output goes to /dev/null): preflight must name the missing command."""
    bg = f"/usr/bin/arping -q -U -c 3 -I eth0 {slab.vip}, \\\n"
    assert bg in sudo_setup.text, sudo_setup.text
    try:
        sudo_setup.install(sudo_setup.text.replace(bg, ""))
        r = roleswap(sudo_setup.config, "--from", "db1", "--to", "db2", "--yes")
        assert r.returncode == 3, r.stdout + r.stderr
        assert re.search(rf"FAIL\s+sudo db1\s.*does not allow: arping -q -U -c 3 -I eth0 "
                         rf"{re.escape(slab.vip)}\n", r.stdout), r.stdout
        print("\n" + "\n".join(line for line in r.stdout.splitlines() if "sudo" in line))
        assert_unchanged(slab)
    finally:
        sudo_setup.install()
