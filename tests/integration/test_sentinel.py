"""roleswap with the Sentinel form of [redis], on a lab started like `roleswap lab up
--sentinel`: the lab's Redis is the master, plus a replica and three sentinels (real
redis-server + redis-sentinel on loopback).

Failovers are real (``SENTINEL FAILOVER``, ``kill -9`` of the master).  A failover that
LOSES roleswap's last writes -- what asynchronous replication can do -- is made
deterministic by detaching the replica first (``REPLICAOF`` a closed port, see
SentinelGroup.detach_replica): it then lacks everything written afterwards when it is
promoted.  What is checked: a swap either completes or rolls back (documented exit
codes), the topology is healthy, and a lost lock, journal or published primary is
noticed and named, and `roleswap recover` repairs it.  The kill -9 test runs last: it
leaves the lab with one Redis data server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from intermission.controller import Controller
from roleswap.config import load_config
from roleswap.coord import client as rclient
from roleswap.coord.endpoint import current_primary
from roleswap.coord.keys import journal_key, lock_key
from roleswap.lab import lab_down, lab_status, procs
from roleswap.lab.redis_sentinel import SentinelGroup, lab_sentinel_group
from tests.conftest import DEFAULT_SERVER, RunningLab, start_lab
from tests.integration.swaphelp import (
    BackgroundSwap,
    assert_same_data,
    create_writes_table,
    last_journal_step,
    primary_of,
    roleswap,
    snapshot,
    swap,
    wait_healthy,
)

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(procs.which("redis-sentinel") is None,
                       reason="needs redis-sentinel (apt-get install -y redis-sentinel)"),
    # scripts/test runs this file on its first flavor only (--flavor-rerun)
    pytest.mark.flavor_independent("Sentinel and its failovers are Redis's side; the swaps they "
                                   "carry are the ones every flavor runs in the other files"),
]


@pytest.fixture(scope="module")
def slab(tmp_path_factory: pytest.TempPathFactory, server_flavor: str) -> Iterator[RunningLab]:
    started = start_lab(tmp_path_factory.mktemp("sentinel-lab") / "lab", server_flavor,
                        sentinel=True)
    lab = RunningLab(started)
    create_writes_table(lab)
    yield lab
    lab_down(started.dir)


@pytest.fixture
def every_flavor_not_needed(server_flavor: str) -> None:
    """Skip on flavors other than the default: Sentinel's behaviour does not depend on
    the MySQL flavor, and each failover takes ~20 s to settle.  (scripts/test's runs on
    further flavors leave the whole file out: ``flavor_independent``.)"""
    if server_flavor != DEFAULT_SERVER:
        pytest.skip(f"Redis failover behaviour does not depend on the MySQL flavor: this runs "
                    f"on {DEFAULT_SERVER}")


def group(lab: RunningLab) -> SentinelGroup:
    return lab_sentinel_group(lab.lab)


def the_primary(lab: RunningLab) -> str:
    writable = primary_of(snapshot(lab))
    assert len(writable) == 1, writable
    return writable[0]


def other(lab: RunningLab, primary: str) -> str:
    return next(n for n in ("db1", "db2") if n != primary)


def status_json(lab: RunningLab) -> dict[str, Any]:
    res = roleswap(lab, "status", "--json")
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_lab_writes_the_sentinel_form_and_a_swap_completes(slab: RunningLab) -> None:
    cfg = slab.config
    assert cfg.redis_url is None and cfg.redis_sentinel is not None
    g = group(slab)
    assert [f"{h}:{p}" for h, p in cfg.redis_sentinel.sentinels] == g.sentinel_addresses
    assert cfg.redis_sentinel.master == "mymaster"
    rows = {r["name"]: r for r in lab_status(slab.dir)}
    for name in ("redis", "redis-replica", "sentinel1", "sentinel2", "sentinel3"):
        assert rows[name]["answering"], rows
    source = the_primary(slab)
    target = other(slab, source)
    code, out = swap(slab, source, target)
    assert code == 0, out
    wait_healthy(slab, target)
    client = rclient.connect(cfg)
    assert client is not None
    assert (current_primary(client, cfg.cluster) or {}).get("name") == target
    assert client.get(lock_key(cfg.cluster)) is None
    assert json.loads(client.get(journal_key(cfg.cluster)) or "{}")["phase"] == "done"
    data = status_json(slab)
    assert data["redis"].startswith("master 'mymaster' via sentinels ")
    assert data["health"]["ok"], data["health"]


@pytest.mark.usefixtures("every_flavor_not_needed")
def test_a_swap_right_after_a_failover_completes(slab: RunningLab) -> None:
    g = group(slab)
    t0 = time.monotonic()
    new = g.failover(hurry=True)
    took = time.monotonic() - t0
    source = the_primary(slab)
    target = other(slab, source)
    code, out = swap(slab, source, target)
    assert code == 0, out
    wait_healthy(slab, target)
    print(f"SENTINEL FAILOVER to {new.marker}: {took * 1000:.0f} ms until every sentinel "
          f"agreed; the swap after it: pause {out['pause_ms']:.1f} ms, total {out['total_ms']:.0f} ms")


@pytest.mark.usefixtures("every_flavor_not_needed")
def test_failover_inside_a_swap_loses_the_lock_and_roleswap_says_so(slab: RunningLab) -> None:
    """The replica misses the swap's writes (lock, journal, publish); the failover to it
    happens while the swap is held before verify (past the point of no return).  The swap
    completes; its next journal writes put the whole record on the new master; the
    unlock finds the lock gone before its TTL and says so; the lost publish is noticed
    by status and repaired by recover."""
    g = group(slab)
    source = the_primary(slab)
    target = other(slab, source)
    g.detach_replica()
    with BackgroundSwap(slab, source, target, hold="verify:before") as bg:
        bg.wait_for(lambda: last_journal_step(slab) == ("verify", "running"))  # held
        t0 = time.monotonic()
        g.failover(hurry=True)
        took = time.monotonic() - t0
        bg.release()
        code, result, printed = bg.result()
    assert code == 0, printed
    wait_healthy(slab, target)
    notes = " ".join(result["notes"])
    assert "the cluster lock was gone before its TTL ran out: Redis lost it" in notes, printed
    unlock = next(s for s in result["steps"] if s["name"] == "unlock")
    assert unlock["detail"] == "was not held: lost before its TTL (Redis failover?)"
    cfg = slab.config
    client = rclient.connect(cfg)
    assert client is not None
    assert json.loads(client.get(journal_key(cfg.cluster)) or "{}")["phase"] == "done"
    data = status_json(slab)
    assert "journal_redis_behind" not in data  # the later writes carried the whole record
    if data["published_primary"]["name"] != target:  # the publish was lost too
        assert f"published primary {source} is not the writable server {target}" in \
            data["health"]["problems"]
        st = roleswap(slab, "status")
        assert "WARNING: published primary" in st.stdout, st.stdout
        assert roleswap(slab, "status", "--check-health").returncode == 8
        rec = roleswap(slab, "recover", "--yes")
        assert rec.returncode == 0, rec.stdout + rec.stderr
        assert f"published {target} again" in rec.stdout, rec.stdout
    assert status_json(slab)["health"]["ok"]
    print(f"failover inside the swap: {took * 1000:.0f} ms; swap total {result['total_ms']:.0f} ms")


@pytest.mark.usefixtures("every_flavor_not_needed")
def test_failover_after_a_swap_loses_its_journal_and_recover_writes_it_back(
        slab: RunningLab) -> None:
    g = group(slab)
    source = the_primary(slab)
    target = other(slab, source)
    g.detach_replica()
    code, out = swap(slab, source, target)
    assert code == 0, out
    g.failover(hurry=True)  # to the replica that missed the whole swap
    wait_healthy(slab, target)
    data = status_json(slab)
    behind = data.get("journal_redis_behind", "")
    assert behind.startswith("Redis has swap ") and "the local file swap " in behind, data
    assert "(phase done)" in behind
    problems = data["health"]["problems"]
    assert "the journal in Redis is behind the local copy (Redis lost writes)" in problems
    assert f"published primary {source} is not the writable server {target}" in problems
    st = roleswap(slab, "status")
    assert "WARNING: the swap journal in Redis is behind this host's local copy" in st.stdout
    assert "run `roleswap recover` here" in st.stdout
    assert roleswap(slab, "status", "--check-health").returncode == 8
    rec = roleswap(slab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "wrote the local copy back to Redis" in rec.stdout, rec.stdout
    assert f"published {target} again" in rec.stdout
    after = status_json(slab)
    assert "journal_redis_behind" not in after and after["health"]["ok"], after["health"]
    print("roleswap status after the lossy failover:\n" + st.stdout)
    print("roleswap recover --yes:\n" + rec.stdout)


def test_min_replicas_to_write_refuses_a_swap_while_the_redis_replica_is_out(
        slab: RunningLab) -> None:
    """The README's advice: with ``min-replicas-to-write 1`` the Redis master refuses
    writes while its replica is out of sync, so nothing can be lost in a failover then:
    the swap is refused before it changes anything, naming the cause."""
    g = group(slab)
    source = the_primary(slab)
    target = other(slab, source)
    master = g.server_client(g.master())
    master.config_set("min-replicas-max-lag", 10)
    master.config_set("min-replicas-to-write", 1)
    replica = g.detach_replica()
    try:
        deadline = time.monotonic() + 15
        while int(master.info("replication").get("connected_slaves", 0)) > 0:
            assert time.monotonic() < deadline, master.info("replication")
            time.sleep(0.05)
        before = snapshot(slab)
        code, out = swap(slab, source, target)
        assert code == 3, out  # PreflightError: nothing was changed
        text = json.dumps(out)
        assert "could not take the cluster lock: Redis ResponseError: the Redis master refuses " \
               "writes while no replica is in sync (its min-replicas-to-write)" in text, text
        assert "repair the Redis replica, then retry" in text
        assert "nothing was changed" in text
        assert snapshot(slab) == before
    finally:
        master.config_set("min-replicas-to-write", 0)
        g.reattach_replica(replica)
    code, out = swap(slab, source, target)
    assert code == 0, out
    wait_healthy(slab, target)


# (step the swap is held at while the sentinels fail over, a step made to fail or "")
MOMENTS = [("fence", ""), ("publish", ""), ("demote", ""), ("fence", "promote")]


@pytest.mark.parametrize(("moment", "fail_at"), MOMENTS,
                         ids=[f"{m}{'-then-rollback' if f else ''}" for m, f in MOMENTS])
def test_a_failover_at_any_moment_of_a_swap_leaves_its_state_on_the_new_master(
        slab: RunningLab, server_flavor: str, moment: str, fail_at: str) -> None:
    """SENTINEL FAILOVER while the swap waits before ``moment``: the old master keeps
    taking the swap's writes (about 10 s, until the sentinels demote it and discard
    them).  The swap notices the move right after resume and at its end, and writes
    its journal, lock, the end of the pause and the published primary again on the new
    master: there, once things settle, the swap is complete (or rolled back), unlocked
    and not paused, and the endpoint names the writable server."""
    if server_flavor != DEFAULT_SERVER and moment != "publish":
        pytest.skip(f"Redis failover behaviour does not depend on the MySQL flavor: every "
                    f"moment runs on {DEFAULT_SERVER}, one on the others")
    g = group(slab)
    source = the_primary(slab)
    target = other(slab, source)
    env = {"ROLESWAP_FAIL_AT": fail_at} if fail_at else {}
    with BackgroundSwap(slab, source, target, env=env, hold=f"{moment}:before") as bg:
        bg.wait_for(lambda: last_journal_step(slab) == (moment, "running"))  # held
        old, new = g.promote()
        bg.release()
        code, result, printed = bg.result()
    g.settle(old, hurry=True)  # the old master turns replica now (the sentinels would ~8 s
    # later): its split-brain writes go
    assert code == (4 if fail_at else 0), printed
    primary = source if fail_at else target
    wait_healthy(slab, primary)
    notes = " ".join(result["notes"])
    assert f"Redis failed over during the swap (master {old[0]}:{old[1]} -> {new.marker})" \
        in notes, printed
    cfg = slab.config
    client = rclient.connect(cfg)
    assert client is not None
    assert rclient.master_now(client) == new.marker
    record = json.loads(client.get(journal_key(cfg.cluster)) or "{}")
    assert record["swap_id"] == result["swap_id"], record
    assert record["phase"] == ("rolled_back" if fail_at else "done"), record
    assert client.get(lock_key(cfg.cluster)) is None, printed
    assert not Controller(client, cfg.scope).status().paused
    assert (current_primary(client, cfg.cluster) or {}).get("name") == primary
    data = status_json(slab)
    assert data["health"]["ok"], data["health"]
    print(f"SENTINEL FAILOVER before {moment}{' (then ' + fail_at + ' fails)' if fail_at else ''}: "
          f"swap exit {code}; {notes}")


@pytest.mark.usefixtures("every_flavor_not_needed")
def test_a_lock_brought_back_by_a_lossy_failover_is_released_by_recover(slab: RunningLab) -> None:
    """The replica stops receiving writes while the swap waits before unlock, the swap
    finishes (lock released, journal done on the master), then the sentinels fail over
    to that replica: Redis holds the finished swap's lock again (and an older journal).
    Preflight refuses and says why, status names it, `roleswap recover` releases it."""
    g = group(slab)
    source = the_primary(slab)
    target = other(slab, source)
    with BackgroundSwap(slab, source, target, hold="unlock:before") as bg:
        bg.wait_for(lambda: last_journal_step(slab) == ("unlock", "running"))
        g.detach_replica()
        bg.release()
        code, result, printed = bg.result()
    assert code == 0, printed
    g.failover(hurry=True)  # to the replica that still has the lock
    wait_healthy(slab, target)
    cfg = slab.config
    client = rclient.connect(cfg)
    assert client is not None
    holder = json.loads(client.get(lock_key(cfg.cluster)) or "{}")
    assert holder.get("swap_id") == result["swap_id"], holder
    data = status_json(slab)
    assert data["stale_lock"]["swap_id"] == result["swap_id"], data
    assert f"stale cluster lock of swap {result['swap_id']}" in data["health"]["problems"]
    st = roleswap(slab, "status")
    assert f"the cluster lock is held by swap {result['swap_id']}, which has finished" in st.stdout
    assert "`roleswap recover` releases it" in st.stdout, st.stdout
    chk = roleswap(slab, "--from", target, "--to", source, "--check")
    assert chk.returncode != 0
    assert "which has finished (journal phase done)" in chk.stdout + chk.stderr, chk.stdout
    assert "run `roleswap recover`: it releases a finished swap's lock" in chk.stdout + chk.stderr
    rec = roleswap(slab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert f"released the cluster lock of swap {result['swap_id']}" in rec.stdout, rec.stdout
    assert client.get(lock_key(cfg.cluster)) is None
    again = roleswap(slab, "recover", "--yes")
    assert again.returncode == 0 and "released the cluster lock" not in again.stdout
    assert status_json(slab)["health"]["ok"]
    code, out = swap(slab, target, source)
    assert code == 0, out
    wait_healthy(slab, source)
    print("preflight on the lock brought back:\n" + chk.stdout)
    print("roleswap recover --yes:\n" + rec.stdout)


def test_kill9_of_the_redis_master_inside_the_pause(slab: RunningLab) -> None:
    """kill -9 of the Redis master while the swap is held inside the pause (before
    promote): the swap completes (exit 0) or rolls back (exit 4), never anything else;
    afterwards one primary, no lock held, no unfinished swap, data equal."""
    g = group(slab)
    source = the_primary(slab)
    target = other(slab, source)
    with BackgroundSwap(slab, source, target, hold="promote:before") as bg:
        bg.wait_for(lambda: last_journal_step(slab) == ("promote", "running"))  # held
        t0 = time.monotonic()
        old = g.kill_master()
        new = g.wait_master((old.host, old.port))
        took = time.monotonic() - t0
        bg.release()
        code, result, printed = bg.result()
    assert code in (0, 4), printed
    primary = target if code == 0 else source
    wait_healthy(slab, primary)
    assert_same_data(slab)
    cfg = load_config(slab.config_path)
    client = rclient.connect(cfg)
    assert client is not None
    assert client.get(lock_key(cfg.cluster)) is None
    data = status_json(slab)
    assert "interrupted_swap" not in data and "swap_in_progress" not in data, data
    steps = {s["name"]: s["detail"] for s in result.get("steps", [])}
    print(f"kill -9 of the Redis master {old.marker} inside the pause: {new.marker} promoted "
          f"after {took * 1000:.0f} ms; swap exit {code}, pause {result.get('pause_ms')} ms, "
          f"total {result.get('total_ms')} ms; steps: {steps}")
