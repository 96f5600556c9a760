"""A cluster lock whose swap is not running any more -- brought back by a Redis that
lost writes (see test_sentinel.py for the real failovers) -- is named by status and
preflight and released by `roleswap recover`; a live swap's lock never is."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from roleswap.coord import client as rclient
from roleswap.coord.keys import lock_key
from tests.conftest import RunningLab
from tests.integration.swaphelp import roleswap


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _put_lock(lab: RunningLab, swap_id: str, pid: int, host: str | None = None) -> str:
    client = rclient.connect(lab.config)
    assert client is not None
    value = json.dumps({"swap_id": swap_id, "host": host or socket.gethostname(), "pid": pid,
                        "at": time.time(), "nonce": "0123456789abcdef"})
    assert client.set(lock_key(lab.config.cluster), value, nx=True, px=60_000)
    return value


def test_a_lock_of_a_gone_process_is_named_and_released_by_recover(lab: RunningLab) -> None:
    client = rclient.connect(lab.config)
    assert client is not None
    _put_lock(lab, "feedfacecafe", _dead_pid())
    try:
        data = json.loads(roleswap(lab, "status", "--json").stdout)
        assert data["stale_lock"]["swap_id"] == "feedfacecafe", data
        assert "stale cluster lock of swap feedfacecafe" in data["health"]["problems"]
        chk = roleswap(lab, "--from", "db1", "--to", "db2", "--check")
        assert chk.returncode != 0
        out = chk.stdout + chk.stderr
        assert "held by swap feedfacecafe, an earlier swap whose process on this host is gone" in out
        rec = roleswap(lab, "recover", "--yes")
        assert rec.returncode == 0, rec.stdout + rec.stderr
        assert "released the cluster lock of swap feedfacecafe: its process on this host is gone" \
            in rec.stdout, rec.stdout
        assert client.get(lock_key(lab.config.cluster)) is None
        assert json.loads(roleswap(lab, "status", "--json").stdout)["health"]["ok"]
    finally:
        client.delete(lock_key(lab.config.cluster))


def test_a_lock_of_a_live_process_or_another_host_is_left_alone(lab: RunningLab) -> None:
    client = rclient.connect(lab.config)
    assert client is not None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "roleswap"])
    try:
        for value in (_put_lock(lab, "aaaaaaaaaaaa", sleeper.pid),
                      None):
            if value is None:
                client.delete(lock_key(lab.config.cluster))
                value = _put_lock(lab, "bbbbbbbbbbbb", _dead_pid(), host="elsewhere.example")
            data = json.loads(roleswap(lab, "status", "--json").stdout)
            assert "stale_lock" not in data, data
            rec = roleswap(lab, "recover", "--yes")
            assert rec.returncode == 0, rec.stdout + rec.stderr
            assert "released the cluster lock" not in rec.stdout
            assert client.get(lock_key(lab.config.cluster)) == value.encode()
    finally:
        sleeper.kill()
        sleeper.wait()
        client.delete(lock_key(lab.config.cluster))
