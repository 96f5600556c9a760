"""Servers killed (kill -9) and restarted from their own config, then `roleswap recover`.

The lab writes read_only=1 into every node's my.cnf, so a crashed server comes back
read-only; these tests check that recover then converges to one writable primary
(and that the swap's own report says what is true).  Found by tests/faults.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from roleswap.lab import nodes
from roleswap.mysql.replica_status import ReplicaStatus
from tests.conftest import RunningLab
from tests.integration.swaphelp import (
    BackgroundSwap,
    Writer,
    assert_same_data,
    back_to_db1,
    last_journal_step,
    present_ids,
    primary_of,
    resync_replica,
    roleswap,
    snapshot,
    swap,
    wait_healthy,
)


@pytest.fixture
def lab(writes_lab: RunningLab) -> Iterator[RunningLab]:
    wait_healthy(writes_lab, "db1")
    yield writes_lab
    back_to_db1(writes_lab, recover_first=True)


def crash(lab: RunningLab, name: str, *, wipe: tuple[str, ...] = ()) -> None:
    """kill -9 ``name``, optionally empty some of its files (as a crash mid-write leaves
    them), and start it again from its own my.cnf."""
    nodes.kill_node(lab.dir, name)
    for f in wipe:
        (lab.dir / name / "data" / f).write_text("")
    nodes.start_node_again(lab.dir, name)


def test_a_crashed_primary_comes_back_read_only_and_recover_reopens_it(lab: RunningLab) -> None:
    lab.query("db1", "INSERT INTO app.writes (n) VALUES (1)")
    crash(lab, "db1")
    assert primary_of(snapshot(lab)) == []  # read_only=1 from its config: nobody writable
    rec = roleswap(lab, "recover", "--yes", "--json")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert json.loads(rec.stdout)["action"] == "reopen"
    assert primary_of(snapshot(lab)) == ["db1"]
    wait_healthy(lab, "db1")
    again = roleswap(lab, "recover", "--yes", "--json")
    assert json.loads(again.stdout) == {"ok": True, "action": "none"}
    assert_same_data(lab)


def test_reopen_is_refused_when_a_replica_holds_more(lab: RunningLab) -> None:
    crash(lab, "db1")
    # a write on a replica (through its fence as root): db1 no longer holds everything
    lab.write_through_fence("db3", "INSERT INTO app.writes (n) VALUES (-3)")
    rec = roleswap(lab, "recover", "--yes")
    assert rec.returncode == 7, rec.stdout + rec.stderr
    assert "db3 holds transactions db1 lacks" in rec.stderr
    assert primary_of(snapshot(lab)) == []
    # heal for the next test: db3's row goes away with its errant GTID
    lab.write_through_fence("db3", "SET sql_log_bin=0", "DELETE FROM app.writes WHERE n = -3")
    resync_replica(lab, "db3")
    lab.set_read_only("db1", False)


def test_broken_replication_metadata_after_a_crash_is_reset_by_recover(lab: RunningLab) -> None:
    """db1 crashed right after demote: its master.info and relay-log index are empty (what
    a kill -9 inside CHANGE MASTER leaves), so every CHANGE MASTER/START SLAVE fails with
    1201.  Recover must reset that channel and finish, not retry the same statement.
    MariaDB only: MySQL keeps that metadata in tables (no master.info to empty)."""
    if lab.dialect("db1").flavor != "mariadb":
        pytest.skip("MySQL keeps replication metadata in InnoDB tables, not master.info")
    code, out = swap(lab, "db1", "db2", env={"ROLESWAP_FAIL_AT": "verify"})
    assert code == 5, out
    crash(lab, "db1", wipe=("master.info", "relay-bin.index"))
    rec = roleswap(lab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "error 1201, was reset first" in rec.stdout
    wait_healthy(lab, "db2")
    assert_same_data(lab)


def test_a_rollback_does_not_claim_a_crashed_source_is_the_primary(lab: RunningLab) -> None:
    """db1 is killed and restarted (read-only) while the swap sits after the lock: the
    next step fails and every undo runs, but db1 takes no writes: exit 6, not a
    "rolled back: db1 is the primary again" (exit 4); recover then reopens db1.
    The swap is held until db1 is back (a fixed sleep lost that race on a busy box: db1
    was still down, so the report named the refused connection instead)."""
    with BackgroundSwap(lab, "db1", "db2", hold="pre-sync:before") as bg:
        bg.wait_for(lambda: last_journal_step(lab) == ("pre-sync", "running"))  # held
        crash(lab, "db1")
        bg.release()
        code, data, printed = bg.result()
    assert code == 6, printed
    assert "db1 is read-only" in data["error"]["message"]
    rec = roleswap(lab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    wait_healthy(lab, "db1")


def test_a_new_primary_killed_before_it_forgot_the_old_one_is_finished_by_recover(
        lab: RunningLab) -> None:
    """Promotion only stops the applier inside the pause window; the channel to db1 is
    reset by `detach`, after the resume.  roleswap is killed just before detach, db2
    (writable, taking writes) is then killed -9 and restarted: it comes back read-only
    with its channel to db1 configured again.  Recover must finish -- db2 the only
    writable server, its channel gone, db1 under it (never the two pointing at each
    other), every acknowledged write present -- and a second run finds nothing to do."""
    writer = Writer(lab)  # writes on whichever server is writable: db2 after the resume
    writer.start()
    try:
        time.sleep(0.2)
        code, _out = swap(lab, "db1", "db2", "--pause-ttl", "2",
                          env={"ROLESWAP_KILL_AT": "detach:before"})
        assert code == -9
        assert primary_of(snapshot(lab)) == ["db2"]
        assert replica_sources(lab, "db2") == [lab.config.servers["db1"].port]
        took = len(writer.acked)
        deadline = time.monotonic() + 10
        while len(writer.acked) < took + 20:  # db2 takes writes of its own
            assert time.monotonic() < deadline, f"the writer is stuck: {writer.errors} errors"
            time.sleep(0.01)
        crash(lab, "db2")
        assert primary_of(snapshot(lab)) == []  # read_only=1 from its my.cnf
        assert replica_sources(lab, "db2") == [lab.config.servers["db1"].port]
        rec = roleswap(lab, "recover", "--yes")
        assert rec.returncode == 0, rec.stdout + rec.stderr
        assert "swap finished" in rec.stdout, rec.stdout
        wait_healthy(lab, "db2")
        time.sleep(0.3)
    finally:
        writer.stop()
    assert replica_sources(lab, "db2") == []
    assert replica_sources(lab, "db1") == [lab.config.servers["db2"].port]
    missing = set(writer.acked) - present_ids(lab, "db2")
    assert not missing, f"{len(missing)} acknowledged writes lost"
    assert_same_data(lab)
    again = roleswap(lab, "recover", "--yes", "--json")
    assert json.loads(again.stdout) == {"ok": True, "action": "none"}


def replica_sources(lab: RunningLab, name: str) -> list[int]:
    """Ports of the sources ``name`` has a replication channel to (running or not)."""
    d = lab.dialect(name)
    return [ReplicaStatus.from_row(row).source_port for row in lab.run(name, [d.replica_status()])]
