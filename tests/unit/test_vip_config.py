"""vip method: config validation and the quoting of every remote command (no hosts needed)."""

from __future__ import annotations

import ipaddress
import shlex
from typing import Any

import pytest

from roleswap.config import parse_config
from roleswap.errors import ConfigError
from roleswap.remote import ssh_target
from roleswap.switch import vip_cmds, vip_config


def conf(switch: dict[str, Any] | None = None, db2: dict[str, Any] | None = None) -> dict[str, Any]:
    sw = {"method": "vip", "vip": "10.0.0.50/24", "interface": "eth0", "ssh_user": "ops"}
    sw.update(switch or {})
    return {
        "cluster": "c",
        "mysql": {"user": "ctl", "password": "pw"},
        "replication": {"user": "repl", "password": "pw"},
        "switch": sw,
        "servers": {"db1": {"host": "10.0.0.11"}, "db2": {"host": "10.0.0.12", **(db2 or {})}},
    }


def test_valid_config_loads_with_defaults_and_overrides() -> None:
    cfg = parse_config(conf(db2={"interface": "bond0.12", "ssh_port": 2222, "sudo": True}))
    s = vip_config.vip_settings(cfg)
    assert s.ip == "10.0.0.50" and s.vip.with_prefixlen == "10.0.0.50/24" and s.arping_count == 3
    assert vip_config.interface(cfg, "db1") == "eth0" and vip_config.interface(cfg, "db2") == "bond0.12"
    t1, t2 = ssh_target(cfg, "db1"), ssh_target(cfg, "db2")
    assert (t1.host, t1.port, t1.user, t1.sudo, t1.accept_new) == ("10.0.0.11", 22, "ops", False, False)
    assert (t2.port, t2.sudo) == (2222, True)


@pytest.mark.parametrize(("switch", "db2", "key"), [
    ({"interface": "eth0; reboot"}, None, "switch.interface"),
    (None, {"interface": "$(id)"}, "servers.db2.interface"),
    (None, {"interface": "a-very-long-interface-name"}, "servers.db2.interface"),
    (None, {"ssh_host": "db2 && rm -rf /"}, "servers.db2.ssh_host"),
    (None, {"ssh_host": "`id`"}, "servers.db2.ssh_host"),
    ({"ssh_user": "root'"}, None, "switch.ssh_user"),
    (None, {"ssh_port": 0}, "servers.db2.ssh_port"),
    (None, {"sudo": "yes"}, "servers.db2.sudo"),
    ({"remote_path": "/bin:$(x)"}, None, "switch.remote_path"),
    ({"ssh_accept_new": 1}, None, "switch.ssh_accept_new"),
])
def test_shell_metacharacters_and_bad_types_are_refused(switch: Any, db2: Any, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(conf(switch, db2))
    assert key in e.value.message and e.value.remedy


@pytest.mark.parametrize(("value", "needle"), [
    ("10.0.0.50", "prefix"), ("10.0.0.500/24", "not an address"), ("fd00::5/64", "IPv6"),
    (None, "prefix"), ("10.0.0.11/24", "VIP itself"),
])
def test_bad_vip_is_refused(value: Any, needle: str) -> None:
    c = conf()
    c["switch"]["vip"] = value
    if value is None:
        del c["switch"]["vip"]
    with pytest.raises(ConfigError) as e:
        parse_config(c)
    assert needle in e.value.message


@pytest.mark.parametrize("switch", [{"arping_count": -1}, {"arping_count": True},
                                    {"verify_timeout": 0}, {"vip_port": 70000}])
def test_bad_numbers_are_refused(switch: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_config(conf(switch))


def test_other_methods_do_not_need_vip_keys() -> None:
    c = conf({"method": "endpoint"})
    del c["switch"]["vip"]
    assert parse_config(c).switch_method == "endpoint"


S = vip_config.VipSettings(vip=ipaddress.IPv4Interface("10.0.0.50/24"), arping_count=4)


def test_commands_are_quoted_and_parse_back() -> None:
    # values that passed validation are plain, but quoting must hold for anything
    evil = "eth0'; touch /tmp/x #"
    for cmd in (vip_cmds.cmd_link(evil), vip_cmds.cmd_addr("add", S, evil), vip_cmds.cmd_addr("del", S, evil),
                vip_cmds.cmd_garp_sync(S, evil, 0.02), vip_cmds.cmd_garp_background(S, evil)):
        words = shlex.split(cmd.split(">")[0])
        assert evil in words, cmd  # the whole value stays ONE argument
    assert shlex.split(vip_cmds.cmd_addr("del", S, "eth0")) == [
        "ip", "addr", "del", "10.0.0.50/24", "dev", "eth0"]
    assert shlex.split(vip_cmds.cmd_garp_sync(S, "eth0", 0.02)) == [
        "timeout", "-s", "INT", "0.02", "arping", "-U", "-c", "1", "-I", "eth0", "10.0.0.50"]
    assert vip_cmds.cmd_garp_background(S, "eth0").startswith("arping -q -U -c 4 -I eth0 10.0.0.50 ")
    assert "'arping .*10\\.0\\.0\\.50$'" in vip_cmds.cmd_find_arping(S)
    with pytest.raises(AssertionError):
        vip_cmds.cmd_addr("flush", S, "eth0")


def test_parse_addrs() -> None:
    out = ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
           "2: eth0    inet 10.0.0.11/24 brd 10.0.0.255 scope global eth0\\  valid_lft forever\n"
           "2: eth0    inet 10.0.0.50/24 scope global secondary eth0\\  valid_lft forever\n")
    assert vip_cmds.parse_addrs(out) == [("lo", "127.0.0.1/8"), ("eth0", "10.0.0.11/24"),
                                    ("eth0", "10.0.0.50/24")]


def test_sudo_prefix_only_when_configured() -> None:
    from roleswap.remote import RemoteShell

    cfg = parse_config(conf(db2={"sudo": True}))
    assert RemoteShell(ssh_target(cfg, "db1")).sudo("ip addr") == "ip addr"
    assert RemoteShell(ssh_target(cfg, "db2")).sudo("ip addr") == "sudo -n -- ip addr"


def test_lab_subnet_must_be_inside_198_18() -> None:
    from roleswap.errors import LabError
    from roleswap.lab.hosts import parse_subnet

    assert str(parse_subnet("198.19.3.0/24")) == "198.19.3.0/24"
    for bad in ("10.0.0.0/24", "198.20.0.0/24", "198.18.0.0/15", "198.18.1.0/28", "nonsense",
                "198.18.1.1/24"):
        with pytest.raises(LabError):
            parse_subnet(bad)


def _fake_tools(tmp: Any, ip_out: str, ip_rc: int) -> dict[str, str]:
    """A PATH whose `ip` prints ``ip_out`` and exits ``ip_rc``; `timeout` stands for the
    synchronous arping (prints its summary); `arping` (background) records its call."""
    import os
    import stat

    for name, body in {"ip": f'echo "$*" >> "$LOG"; printf "%s\\n" {shlex.quote(ip_out)}; exit {ip_rc}',
                       "timeout": 'echo "timeout $*" >> "$LOG"; echo "Sent 1 probes (1 broadcast(s))"',
                       "arping": 'echo "arping $*" >> "$LOG"'}.items():
        f = tmp / name
        f.write_text(f"#!/bin/sh\n{body}\n")
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{tmp}:{os.environ['PATH']}", "LOG": str(tmp / "log")}


@pytest.mark.parametrize(("ip_out", "ip_rc", "announced"), [
    ("", 0, True), ("RTNETLINK answers: File exists", 2, True),
    ("RTNETLINK answers: Operation not permitted", 2, False)])
def test_add_announce_is_one_command_that_announces_only_a_held_vip(
        tmp_path: Any, ip_out: str, ip_rc: int, announced: bool) -> None:
    import subprocess
    import time

    env = _fake_tools(tmp_path, ip_out, ip_rc)
    cmd = vip_cmds.cmd_add_announce(S, "eth0", 0.003, lambda c: c)
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env).stdout
    for _ in range(100):  # the background arping may log a moment later
        log = (tmp_path / "log").read_text()
        if not announced or "arping -q -U -c 4" in log:
            break
        time.sleep(0.01)
    assert ("Sent 1 probes" in out) is announced
    assert (vip_cmds.ADD_FAILED in out) is not announced
    assert ("timeout -s INT 0.003 arping -U -c 1 -I eth0 10.0.0.50" in log) is announced
    assert ("arping -q -U -c 4 -I eth0 10.0.0.50" in log) is announced
    if not announced:
        assert "Operation not permitted" in out


def test_remove_is_one_command_that_lists_what_is_left(tmp_path: Any) -> None:
    import subprocess

    env = _fake_tools(tmp_path, "2: eth0    inet 10.0.0.11/24 scope global eth0", 0)
    cmd = vip_cmds.cmd_remove(S, ["eth0", "bond0"], lambda c: "sudo -n -- " + c)
    assert cmd.count("sudo -n -- ip addr del 10.0.0.50/24 dev") == 2
    assert "sudo -n -- ip -o" not in cmd  # listing needs no privilege
    out = subprocess.run(["sh", "-c", cmd.replace("sudo -n -- ", "")], capture_output=True, text=True,
                         env=env).stdout
    assert set(vip_cmds.parse_addrs(out)) == {("eth0", "10.0.0.11/24")}  # (the fake lists every call)
    assert vip_cmds.DEL_FAILED not in out
