"""The demo, the bench and the end-to-end test through HAProxy (``lab up --haproxy``).

A loopback lab with one ``haproxy`` in front of every database server (``mode tcp``,
writes backend ``mysql_primary``, only the primary's entry ready); roleswap uses the
``haproxy`` switch method and the demo app connects to HAProxy's frontend (a fixed
address, like a VIP: :func:`roleswap.demo.db.fixed_address`).  No root needed; without
a ``haproxy`` binary callers skip and say why: :func:`haproxy_unavailable`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from roleswap.config import load_config
from roleswap.lab import Lab, procs
from roleswap.switch.haproxy import haproxy_status


def haproxy_unavailable() -> str | None:
    """``None`` if ``lab up --haproxy`` can start here, else the reason it cannot."""
    if procs.which("haproxy") is None:
        return "haproxy is not installed (apt-get install -y haproxy)"
    return None


def haproxy_version() -> str:
    """"HAProxy 2.6.12-1+deb12u4" ("HAProxy" if ``haproxy -v`` says nothing usable)."""
    binary = procs.which("haproxy")
    try:
        out = subprocess.run([binary or "haproxy", "-v"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "HAProxy"
    m = re.search(r"HA-?Proxy version (\S+)", out)
    return f"HAProxy {m.group(1)}" if m else "HAProxy"


def frontend(lab: Lab) -> str:
    """``127.0.0.1:PORT``: where the app connects (the lab's haproxy node)."""
    n = lab.node("haproxy")
    return f"{n.host}:{n.port}"


def ready_entries(config_path: Path | str) -> dict[str, list[str]]:
    """{instance: the servers whose entry in the writes backend is ready (or drain)}."""
    out: dict[str, list[str]] = {}
    for row in haproxy_status(load_config(config_path)):
        if "error" in row:
            raise RuntimeError(f"HAProxy {row['name']}: {row['error']}")
        out[row["name"]] = sorted(row["servers"][e]["server"] or e for e in row["ready"])
    return out


def haproxy_problems(config_path: Path | str, primary: str | None) -> list[str]:
    """Empty if every HAProxy routes writes to the primary and to no other server."""
    try:
        ready = ready_entries(config_path)
    except RuntimeError as e:
        return [str(e)]
    return [f"HAProxy {name} routes writes to {', '.join(servers) or 'no server'}; expected only the "
            f"primary {primary or '(unknown)'}" for name, servers in ready.items()
            if primary is None or servers != [primary]]

