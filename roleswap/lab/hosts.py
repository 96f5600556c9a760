"""`roleswap lab up --hosts`: every database node on a "host" of its own (root only).

Layout (subnet S inside 198.18.0.0/15, default 198.18.71.0/24; prefix P = "rs" + 4 hex
derived from the lab directory, so two labs never touch each other's names)::

    root namespace            P-app namespace              P-db1 namespace
    P-r  S+1  <-- veth -->    P-a0 ─┐                      eth0 S+11 (+ VIP S+10)
                                    br0 (S+2) ── P-d1 <-- veth --> mariadbd :3306, sshd :22
                                        ── P-d2 <-- veth --> P-db2: eth0 S+12 ...

* The bridge lives INSIDE the app namespace: a bridge in the root namespace may not
  forward here (br_netfilter + FORWARD DROP).
* roleswap, the tests and their clients run in the root namespace and reach the hosts
  (MySQL, SSH, the VIP) through the ``P-r`` veth, like a client host on the same LAN:
  its neighbour cache is what the gratuitous ARPs must update.  Clients may also run
  inside the app namespace (``ip netns exec P-app ...``; br0 has S+2).
* Every node binds own address + VIP with ``ip_nonlocal_bind=1``, so whichever host
  holds the VIP answers on it.  IPv6 is disabled on everything we create: no address
  outside 127/8 and S is ever used.

Everything created is recorded in lab.json *before* it is created; teardown removes
exactly that (plus anything with our prefix), killing namespace processes by PID first.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roleswap.errors import LabError
from roleswap.lab import procs

DEFAULT_SUBNET = "198.18.71.0/24"
ALLOWED = ipaddress.IPv4Network("198.18.0.0/15")
MYSQL_PORT = 3306
SSH_PORT = 22
# host offsets inside the subnet
ROOT_OFF, APP_OFF, VIP_OFF, NODE_OFF = 1, 2, 10, 11


def lab_prefix(directory: Path) -> str:
    return "rs" + hashlib.sha1(str(directory).encode()).hexdigest()[:4]  # noqa: S324 (a name, not security)


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as e:
        raise LabError(f"--subnet {subnet!r} is not a network: {e}",
                       remedy=f"e.g. --subnet {DEFAULT_SUBNET}") from None
    if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(ALLOWED):
        raise LabError(f"--subnet {subnet} is outside 198.18.0.0/15",
                       remedy="the lab only uses the benchmarking range 198.18.0.0/15, "
                              f"e.g. --subnet {DEFAULT_SUBNET}")
    if not 16 <= net.prefixlen <= 27:
        raise LabError(f"--subnet {subnet}: prefix /{net.prefixlen} is not in /16../27",
                       remedy="use a /24, e.g. " + DEFAULT_SUBNET)
    return net


def addr(net: ipaddress.IPv4Network, offset: int) -> str:
    return str(net.network_address + offset)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed: {res.stderr.strip()}",
                       remedy="see the message; `roleswap lab down` removes what was created")
    return res


def _namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _networks_in_use(ns: str | None) -> list[tuple[str, ipaddress.IPv4Network]]:
    pre = ["-n", ns] if ns else []
    found: list[tuple[str, ipaddress.IPv4Network]] = []
    for args in (["-o", "-4", "addr", "show"], ["-4", "route", "show", "table", "all"]):
        for line in _ip(*pre, *args, check=False).stdout.splitlines():
            words = line.split()
            cand = words[3] if args[0] == "-o" and len(words) > 3 else (words[0] if words else "")
            if cand in ("default", "broadcast", "local", "unreachable", "blackhole"):
                cand = words[1] if len(words) > 1 else ""
            try:
                net = ipaddress.ip_network(cand, strict=False)
            except ValueError:
                continue
            if isinstance(net, ipaddress.IPv4Network) and not net.is_loopback:
                found.append((f"{ns or 'root namespace'}: {line.strip()[:80]}", net))
    return found


def check_free(net: ipaddress.IPv4Network, prefix: str) -> None:
    """Refuse before creating anything if the subnet or our names are already in use."""
    ours = [n for n in _namespaces() if n.startswith(prefix + "-")]
    if ours:
        raise LabError(f"namespaces {', '.join(ours)} already exist (a lab in this --dir?)",
                       remedy="run `roleswap lab down --dir ...` for that lab first")
    for ns in (None, *_namespaces()):
        for where, used in _networks_in_use(ns):
            if used.overlaps(net) and used.prefixlen > 0:
                raise LabError(f"subnet {net} collides with {where}",
                               remedy="choose another --subnet inside 198.18.0.0/15")


class HostsNet:
    """Create (and record) the namespaces, bridge and veths of one lab."""

    def __init__(self, state: dict[str, Any], save: Callable[[], None]) -> None:
        self.state = state  # lab.json "hosts" section; mutated then saved
        self.save = save
        self.net = ipaddress.IPv4Network(state["subnet"])
        self.prefix: str = state["prefix"]

    @property
    def app_ns(self) -> str:
        return f"{self.prefix}-app"

    def host_ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _record(self, key: str, value: str) -> None:
        self.state.setdefault(key, []).append(value)
        self.save()

    def _new_ns(self, ns: str) -> None:
        self._record("namespaces", ns)
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        # New namespaces may inherit ip_forward=1; hosts do not route.  No IPv6 at all.
        for key, value in (("net.ipv4.ip_forward", "0"), ("net.ipv6.conf.all.disable_ipv6", "1"),
                           ("net.ipv6.conf.default.disable_ipv6", "1")):
            _sysctl(ns, key, value)

    def build(self, nodes: list[str]) -> None:
        app, br = self.app_ns, "br0"
        self._new_ns(app)
        _ip("-n", app, "link", "add", br, "type", "bridge")
        _ip("-n", app, "addr", "add", f"{addr(self.net, APP_OFF)}/{self.net.prefixlen}", "dev", br)
        _ip("-n", app, "link", "set", br, "up")
        # root <-> bridge: the control process and test clients sit here
        root_if = f"{self.prefix}-r"
        self._record("links", root_if)
        _ip("link", "add", root_if, "type", "veth", "peer", "name", f"{self.prefix}-a0", "netns", app)
        Path(f"/proc/sys/net/ipv6/conf/{root_if}/disable_ipv6").write_text("1")
        _ip("addr", "add", f"{addr(self.net, ROOT_OFF)}/{self.net.prefixlen}", "dev", root_if)
        _ip("link", "set", root_if, "up")
        _ip("-n", app, "link", "set", f"{self.prefix}-a0", "master", br, "up")
        for i, name in enumerate(nodes):
            ns = self.host_ns(name)
            self._new_ns(ns)
            _sysctl(ns, "net.ipv4.ip_nonlocal_bind", "1")
            port_if = f"{self.prefix}-d{i + 1}"
            # both ends are created directly in their namespaces: no name ever appears in root
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port_if,
                "netns", app)
            _ip("-n", ns, "addr", "add", f"{addr(self.net, NODE_OFF + i)}/{self.net.prefixlen}",
                "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", app, "link", "set", port_if, "master", br, "up")


def _sysctl(ns: str, key: str, value: str) -> None:
    res = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LabError(f"sysctl {key} in {ns} failed: {res.stderr.strip()}",
                       remedy="a kernel without netns sysctls? see the message")


def teardown(state: dict[str, Any]) -> list[str]:
    """Remove what ``state`` recorded and anything else with its prefix.  Idempotent."""
    prefix = str(state.get("prefix") or "")
    if not prefix.startswith("rs") or len(prefix) < 4:
        return []  # never guess: without our own prefix we remove nothing
    removed: list[str] = []
    names = set(state.get("namespaces", [])) | {n for n in _namespaces() if n.startswith(prefix + "-")}
    for ns in sorted(names):
        if not ns.startswith(prefix + "-") or ns not in _namespaces():
            continue
        # processes left in our namespaces (background arping, ssh sessions) die by PID first
        for pid_s in _ip("netns", "pids", ns, check=False).stdout.split():
            procs.stop(int(pid_s), "", timeout=2)
        _ip("netns", "del", ns, check=False)
        removed.append(ns)
    for link in set(state.get("links", [])):
        if link.startswith(prefix) and _ip("link", "show", "dev", link, check=False).returncode == 0:
            _ip("link", "del", "dev", link, check=False)
            removed.append(link)
    return removed


# -- keys and sshd -----------------------------------------------------------------
def make_keys(directory: Path, hosts: dict[str, str]) -> dict[str, Path]:
    """Client key, one host key per host, authorized_keys and a known_hosts (strict SSH)."""
    ssh = directory / "ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    keygen = procs.require("ssh-keygen")["ssh-keygen"]
    client = ssh / "id_ed25519"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "roleswap-lab", "-f", str(client)],
                   check=True, capture_output=True)
    shutil.copy(client.with_suffix(".pub"), ssh / "authorized_keys")
    known = []
    for name, ip in hosts.items():
        hk = directory / name / "ssh" / "host_ed25519"
        hk.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(hk)],
                       check=True, capture_output=True)
        kind, blob = hk.with_suffix(".pub").read_text().split()[:2]
        known.append(f"{ip} {kind} {blob}")
    (ssh / "known_hosts").write_text("\n".join(known) + "\n")
    return {"key": client, "known_hosts": ssh / "known_hosts", "authorized": ssh / "authorized_keys"}


def sshd_config_path(directory: Path, name: str) -> Path:
    return directory / name / "ssh" / "sshd_config"


def write_sshd_config(directory: Path, name: str, ip: str) -> Path:
    d = directory / name / "ssh"
    lines = [
        f"ListenAddress {ip}:{SSH_PORT}",
        f"HostKey {d / 'host_ed25519'}",
        f"PidFile {d / 'sshd.pid'}",
        # other users (the sudo test's) need their own ~/.ssh/authorized_keys; the lab's
        # client key is authorized for root only (the Match block below)
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # keys live under the lab dir, which may be in /tmp
        "UseDNS no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "MaxStartups 100",
        "Match User root",  # must stay last: Match applies to every line after it
        f"    AuthorizedKeysFile {directory / 'ssh' / 'authorized_keys'}",
        "",
    ]
    path = sshd_config_path(directory, name)
    path.write_text("\n".join(lines))
    return path


def start_sshd(directory: Path, name: str, ns: str, ip: str,
               on_spawn: Callable[[int], None] = lambda _pid: None, timeout: float = 10.0) -> int:
    """Start (or restart) the sshd of host ``name`` in its namespace; return its PID."""
    sshd = procs.require("sshd")["sshd"]
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    cfg = sshd_config_path(directory, name)
    # `ip netns exec` execs (no fork), so the PID is sshd's own; -D keeps it in the foreground.
    proc = procs.spawn(["ip", "netns", "exec", ns, sshd, "-D", "-e", "-f", str(cfg)],
                       cfg.parent / "sshd.log")
    on_spawn(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"sshd for {name} exited: {procs.tail_log(cfg.parent / 'sshd.log')}",
                           remedy=f"see {cfg.parent / 'sshd.log'}")
        if procs.port_open(ip, SSH_PORT):
            return proc.pid
        time.sleep(0.02)
    raise LabError(f"sshd for {name} did not listen on {ip}:{SSH_PORT}",
                   remedy=f"see {cfg.parent / 'sshd.log'}")


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("`roleswap lab up --hosts` needs root (network namespaces, sshd)",
                       remedy="run it as root (e.g. in CI), or use `roleswap lab up` without --hosts")


def vip_on(ns: str, vip: str, iface: str = "eth0") -> bool:
    """Whether host namespace ``ns`` holds ``vip`` right now (for the lab and tests)."""
    out = _ip("-n", ns, "-o", "-4", "addr", "show", "dev", iface, check=False).stdout
    return any(w.split("/")[0] == vip for line in out.splitlines() for w in line.split()[3:4])


def toml(value: str) -> str:
    return json.dumps(value)
