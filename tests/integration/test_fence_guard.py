"""The fence holds against privileged writers, and recover decides from the servers.

Real conditions on a lab of the module's own: an account holding READ ONLY ADMIN
(it writes through read_only on MariaDB), a write landing on the old primary inside
the swap's window, a demoted server that came back writable, a hand-made rollback
before `roleswap recover`.  On MySQL the fence is super_read_only, which stops every
account: the same account (holding CONNECTION_ADMIN, which bypasses plain read_only)
is refused with 1290, preflight has nothing to refuse and --kill-privileged nothing
to kill.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pymysql
import pytest

from roleswap.mysql.conn import connect, query
from tests.conftest import RunningLab
from tests.integration.swaphelp import (
    BackgroundSwap,
    Writer,
    assert_same_data,
    back_to_db1,
    create_writes_table,
    present_ids,
    primary_of,
    recover_converges,
    roleswap,
    snapshot,
    swap,
    wait_healthy,
)

PRIV_USER, PRIV_PASSWORD = "opsbot", "opsbot-pw-1"


def bypassed(lab: RunningLab) -> bool:
    """Can any account write through this flavor's fence (MariaDB's read_only)?"""
    return bool(lab.dialect("db1").fence_bypass_privileges)


@pytest.fixture(scope="module")
def glab(module_lab: RunningLab) -> RunningLab:
    create_writes_table(module_lab)
    # what writes through plain read_only: MariaDB's READ ONLY ADMIN; on MySQL
    # CONNECTION_ADMIN (super_read_only, the fence there, stops it all the same)
    privs = ", ".join(module_lab.dialect("db1").fence_bypass_privileges or ("CONNECTION_ADMIN",))
    for n in sorted(module_lab.config.servers):
        # on every node, outside the binlog: no errant GTIDs on the replicas
        module_lab.write_through_fence(
            n, "SET SESSION sql_log_bin=0",
            ("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (PRIV_USER, PRIV_PASSWORD)),
            ("GRANT SELECT, INSERT ON app.* TO %s@'%%'", (PRIV_USER,)),
            (f"GRANT {privs} ON *.* TO %s@'%%'", (PRIV_USER,)))
    return module_lab


@pytest.fixture
def lab(glab: RunningLab) -> Iterator[RunningLab]:
    wait_healthy(glab, "db1")
    yield glab
    back_to_db1(glab, "--kill-privileged", recover_first=True)


def priv_connect(lab: RunningLab, name: str) -> pymysql.connections.Connection:
    s = lab.config.servers[name]
    return pymysql.connect(host=s.host, port=s.port, user=PRIV_USER, password=PRIV_PASSWORD,
                           autocommit=True, ssl_disabled=True, connect_timeout=2, read_timeout=5)


def writable(lab: RunningLab) -> list[str]:
    out = []
    for n in sorted(lab.config.servers):
        c = connect(lab.config.server(n), lab.config.mysql, timeout=2, tls=False)
        try:
            if not int(query(c, "SELECT @@GLOBAL.read_only AS ro")[0]["ro"]):
                out.append(n)
        finally:
            c.close()
    return out


@dataclass(eq=False)
class PrivilegedWriter(threading.Thread):
    """Inserts on db1 through the privileged account until its session dies."""

    lab: RunningLab
    acked: list[int] = field(default_factory=list)
    error: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.conn = priv_connect(self.lab, "db1")

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                with self.conn.cursor() as cur:
                    cur.execute("INSERT INTO app.writes (n) VALUES (-1)")
                    self.acked.append(int(cur.lastrowid))
                time.sleep(0.002)
        except pymysql.MySQLError as e:
            self.error = f"{e.args[0]}"
        finally:
            with contextlib.suppress(pymysql.MySQLError):
                self.conn.close()


def test_preflight_refuses_a_session_that_writes_through_read_only(lab: RunningLab) -> None:
    conn = priv_connect(lab, "db1")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            sid = cur.fetchone()[0]
        before = snapshot(lab)
        if not bypassed(lab):
            res = roleswap(lab, "--from", "db1", "--to", "db2", "--check", "--json")
            assert res.returncode == 0, res.stdout + res.stderr
            fence = {c["name"]: c for c in json.loads(res.stdout)["checks"]}["fence"]
            assert fence["message"] == "super_read_only on db1 stops every account", fence
            return
        res = roleswap(lab, "--from", "db1", "--to", "db2", "--yes", "--json")
        assert res.returncode == 3, res.stdout + res.stderr
        checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
        fence = checks["fence"]
        assert fence["status"] == "fail"
        assert PRIV_USER in fence["message"] and str(sid) in fence["message"]
        assert "--kill-privileged" in fence["remedy"]
        assert snapshot(lab) == before
    finally:
        conn.close()


def test_kill_privileged_kills_them_after_the_fence_and_loses_nothing(lab: RunningLab) -> None:
    pw = PrivilegedWriter(lab)
    pw.start()
    time.sleep(0.2)
    code, out = swap(lab, "db1", "db2", "--kill-privileged")
    pw.stop_event.set()
    pw.join(10)
    assert code == 0, out
    fence = next(s for s in out["steps"] if s["name"] == "fence")
    if bypassed(lab):
        assert "killed 1 privileged session" in fence["detail"]
        assert pw.error, "the privileged session was not killed"
    else:  # super_read_only refused its next write; nothing was killed
        assert "--kill-privileged: nothing to kill" in fence["detail"], fence
        assert pw.error == "1290", pw.error
    assert pw.acked
    wait_healthy(lab, "db2")
    missing = set(pw.acked) - present_ids(lab, "db2")
    assert not missing, f"{len(missing)} acknowledged privileged writes lost"
    assert_same_data(lab)


def test_a_write_through_the_fence_rolls_the_swap_back(lab: RunningLab) -> None:
    """A privileged session that connects AFTER preflight writes on db1 while the swap
    sits between promote and resume: fence-check sees db1's position move and rolls
    back, so that acknowledged write is kept (on db1, replicated everywhere).

    No ordinary writer runs here: one that ignored the pause would write on the
    promoted db2 in the same window, and with writes on both sides nothing can be
    rolled back safely (that case ends in exit 6 and a manual decision)."""
    with BackgroundSwap(lab, "db1", "db2", "--pause-ttl", "10", hold="promote:after") as bg:
        # polled with the control account: a root session open on db1 while preflight runs
        # would itself be a session that can write through read_only (refused)
        bg.wait_for(lambda: writable(lab) == ["db2"], every=0.01)  # promoted, held
        conn = priv_connect(lab, "db1")
        try:
            with conn.cursor() as cur:
                if not bypassed(lab):  # super_read_only: the write never lands
                    with pytest.raises(pymysql.err.OperationalError) as err:
                        cur.execute("INSERT INTO app.writes (n) VALUES (-2)")
                    assert err.value.args[0] == 1290
                    through = None
                else:
                    cur.execute("INSERT INTO app.writes (n) VALUES (-2)")
                    through = int(cur.lastrowid)
        finally:
            conn.close()
        bg.release()
        code, data, printed = bg.result()
    if through is None:
        assert code == 0, printed  # fence-check found db1 where catch-up left it
        return
    assert code == 4, printed
    assert data["rolled_back"] is True
    assert "took writes after the fence" in data["error"]["message"]
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert statuses["fence-check"] == "failed" and "resume" not in statuses
    wait_healthy(lab, "db1")
    assert_same_data(lab)  # waits until every replica applied db1's position
    for n in ("db1", "db2", "db3"):
        assert through in present_ids(lab, n), n


def test_recover_enforces_read_only_on_a_demoted_server_that_came_back_writable(
        lab: RunningLab) -> None:
    code, out = swap(lab, "db1", "db2", env={"ROLESWAP_FAIL_AT": "verify"})
    assert code == 5, out
    # db1 is demoted and replicating from db2; as after a restart with a config that
    # lacks read_only, it comes back writable
    lab.set_read_only("db1", False)
    assert sorted(primary_of(snapshot(lab))) == ["db1", "db2"]
    recover_converges(lab, "db2")


def test_recover_follows_a_cluster_rolled_back_by_hand(lab: RunningLab) -> None:
    """Killed right after promote; an operator rolled back by hand and db1 took writes
    that db2 replicated.  Those are not db2's own writes: recover must not finish the
    swap (the old rule demoted db1 and left no writable server).

    The writer starts after the hand rollback: one running while db2 was promoted would
    write on db2 too, and writes on both sides are a case recover must not decide."""
    code, _out = swap(lab, "db1", "db2", "--pause-ttl", "2",
                      env={"ROLESWAP_KILL_AT": "promote:after"})
    assert code == -9
    writer = Writer(lab)
    try:
        # the hand rollback: db2 read_only and back under db1, db1 writable
        lab.set_read_only("db2", True)
        lab.replicate_from("db2", "db1")
        lab.set_read_only("db1", False)
        wait_healthy(lab, "db1")
        writer.start()
        time.sleep(0.3)  # db1 takes writes; db2 replicates them
        recover_converges(lab, "db1", says="roll back")
    finally:
        writer.stop()
    assert not set(writer.acked) - present_ids(lab, "db1")
    assert_same_data(lab)


def test_kill_privileged_waits_until_the_killed_sessions_have_ended(lab: RunningLab) -> None:
    """KILL only flags a thread: a killed session ends its statement (a commit in flight
    lands, a big transaction rolls back) before it leaves.  The fence waits for that, so
    catch-up reads the old primary's final position after anything a killed session
    could still commit (not after it, which fence-check would see as a write through the
    fence and roll back).  Shown with an open transaction of 50,000 rows: its rollback
    keeps the killed thread in the processlist for 0.1-0.2 s here (the fence may wait up
    to --fence-timeout, 10 s in this test)."""
    if not bypassed(lab):
        pytest.skip("super_read_only stops every account: --kill-privileged kills nothing")
    conn = priv_connect(lab, "db1")
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        sid = int(cur.fetchone()[0])
        cur.execute("BEGIN")
        cur.execute("INSERT INTO app.writes (n) SELECT -7 FROM app.seq_1_to_50000")
    try:
        with BackgroundSwap(lab, "db1", "db2", "--kill-privileged", "--fence-timeout", "10",
                            hold="fence:after") as bg:
            bg.wait_held()
            c = connect(lab.config.server("db1"), lab.config.mysql, timeout=2, tls=False)
            try:
                rows = query(c, "SELECT COMMAND AS c FROM information_schema.PROCESSLIST "
                                "WHERE ID = %s", (sid,))
            finally:
                c.close()
            bg.release()
            code, data, printed = bg.result()
    finally:
        with contextlib.suppress(pymysql.MySQLError):
            conn.close()
    assert rows == [], f"the fence ended while killed session {sid} still ran: {rows}"
    assert code == 0, printed
    fence = next(s for s in data["steps"] if s["name"] == "fence")
    assert f"killed 1 privileged session(s): {sid} (all ended within" in fence["detail"], fence
    wait_healthy(lab, "db2")
    assert lab.query("db2", "SELECT COUNT(*) FROM app.writes WHERE n = -7")[0][0] == 0
    assert_same_data(lab)
