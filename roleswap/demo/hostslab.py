"""The demo, the bench and the end-to-end test on a hosts lab (``lab up --hosts``, root).

Each MariaDB server then runs on a "host" of its own (a network namespace with sshd),
roleswap uses the ``vip`` switch method and the demo app connects to the VIP.  Without
root (or without working network namespaces) callers fall back to the loopback lab
with the ``endpoint`` method, or skip, and say why: :func:`hosts_unavailable`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from roleswap.errors import LabError
from roleswap.lab import Lab, procs
from roleswap.lab.hosts import check_free, lab_prefix, parse_subnet, vip_on

# Subnets tried in turn when none is given (inside 198.18.0.0/15; the lab's own default
# 198.18.71.0/24 and the integration tests' 198.18.73.0/24 are left alone).
DEMO_SUBNETS = tuple(f"198.18.{i}.0/24" for i in range(80, 90))
BENCH_SUBNETS = tuple(f"198.18.{i}.0/24" for i in range(90, 100))
E2E_SUBNETS = tuple(f"198.18.{i}.0/24" for i in range(100, 110))
HOSTS_BINARIES = ("ip", "sshd", "ssh-keygen", "arping")


def hosts_unavailable() -> str | None:
    """``None`` if a hosts lab can start here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "not root (a hosts lab needs network namespaces and sshd)"
    try:
        found = procs.require(*HOSTS_BINARIES)
    except LabError as e:
        return f"{e.message} ({e.remedy})"
    if _run([found["ip"], "netns", "list"]) != 0:
        return "`ip netns list` fails here"
    unshare = shutil.which("unshare")
    if unshare and _run([unshare, "--net", "true"]) != 0:
        return "cannot create a network namespace (`unshare --net` fails: no CAP_SYS_ADMIN?)"
    return None


def _run(argv: list[str]) -> int:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


def pick_subnet(directory: Path, candidates: tuple[str, ...]) -> str:
    """The first candidate that collides with no address or route here (lab_up checks again)."""
    prefix = lab_prefix(Path(directory).absolute())
    reasons = []
    for cand in candidates:
        try:
            check_free(parse_subnet(cand), prefix)
            return cand
        except LabError as e:
            reasons.append(e.message)
    raise LabError(f"no free subnet among {candidates[0]}..{candidates[-1]}: {reasons[-1]}",
                   remedy="pass --subnet with a free /24 inside 198.18.0.0/15")


def vip_address(lab: Lab) -> str:
    return str(lab.hosts["vip"])


def vip_holders(lab: Lab) -> list[str]:
    """The hosts that hold the VIP right now (asked in each host's namespace)."""
    h = lab.hosts
    iface = str(h.get("interface", "eth0"))
    return [name for name, host in sorted(h["hosts"].items()) if vip_on(host["ns"], h["vip"], iface)]


def vip_problems(lab: Lab, primary: str | None) -> list[str]:
    """Empty if the VIP is on the primary and on no other host."""
    holders = vip_holders(lab)
    if primary is not None and holders == [primary]:
        return []
    return [f"VIP {vip_address(lab)} is on {', '.join(holders) or 'no host'}; "
            f"expected only on the primary {primary or '(unknown)'}"]
