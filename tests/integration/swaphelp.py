"""Helpers for swap tests: a continuous writer, a read_only watcher, topology snapshots."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from roleswap.mysql.conn import connect
from tests.conftest import RunningLab

ROLESWAP = [sys.executable, "-m", "roleswap"]


def roleswap(lab: RunningLab | str, *args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cfg = lab if isinstance(lab, str) else str(lab.config_path)
    full_env = dict(os.environ)
    full_env.pop("ROLESWAP_FAIL_AT", None)
    full_env.pop("ROLESWAP_KILL_AT", None)
    full_env.update(env or {})
    return subprocess.run([*ROLESWAP, "-c", cfg, *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, check=False)


def swap(lab: RunningLab, source: str, target: str, *extra: str,
         env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """Run a swap with --yes --json; return (exit code, parsed JSON)."""
    res = roleswap(lab, "--from", source, "--to", target, "--yes", "--json", *extra, env=env)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    data = json.loads(lines[-1]) if lines else {"stdout": res.stdout, "stderr": res.stderr}
    data["_stderr"] = res.stderr
    return res.returncode, data


def names(lab: RunningLab) -> list[str]:
    return sorted(lab.config.servers)


def snapshot(lab: RunningLab) -> dict[str, Any]:
    """Roles as the servers report them: read_only, source (by port), both threads running."""
    ports = {lab.config.servers[n].port: n for n in names(lab)}
    out: dict[str, Any] = {}
    for n in names(lab):
        ro = lab.query(n, "SELECT @@GLOBAL.read_only")[0][0]
        rep = lab.replica(n)
        out[n] = {
            "read_only": int(str(ro)),
            "source": ports.get(rep.source_port) if rep else None,
            "running": bool(rep and rep.running),
        }
    return out


def primary_of(snap: dict[str, Any]) -> list[str]:
    return [n for n, s in snap.items() if not s["read_only"]]


def wait_healthy(lab: RunningLab, primary: str, timeout: float = 15) -> dict[str, Any]:
    """Until every other node replicates from ``primary`` with running threads."""
    deadline = time.monotonic() + timeout
    snap: dict[str, Any] = {}
    while time.monotonic() < deadline:
        snap = snapshot(lab)
        if primary_of(snap) == [primary] and all(
                s["source"] == primary and s["running"] for n, s in snap.items() if n != primary):
            return snap
        time.sleep(0.05)
    raise AssertionError(f"topology not healthy around {primary}: {snap}")


def assert_same_data(lab: RunningLab, table: str = "app.writes") -> dict[str, Any]:
    """Every node has the same rows (CHECKSUM TABLE) and GTID state once caught up."""
    primary = primary_of(snapshot(lab))[0]
    for n in names(lab):
        if n != primary:
            assert lab.wait_caught_up(n, primary, 20), n
    sums = {n: lab.query(n, f"CHECKSUM TABLE {table}")[0][1] for n in names(lab)}
    assert len(set(sums.values())) == 1, sums
    states = {n: lab.gtid_applied(n) for n in names(lab)}
    assert len(set(states.values())) == 1, states
    return {"checksum": sums, "gtid": states}


@dataclass(eq=False)
class Writer(threading.Thread):
    """Inserts rows continuously through the application account into whichever
    server accepts writes; an id counts as acknowledged only after COMMIT returned."""

    lab: RunningLab
    table: str = "app.writes"
    acked: list[int] = field(default_factory=list)
    errors: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.lab.query("db1" if "db1" in self.lab.config.servers else names(self.lab)[0],
                       "SELECT 1")

    def _connect(self) -> pymysql.connections.Connection | None:
        assert self.lab.config.lab is not None
        for n in names(self.lab):
            s = self.lab.config.servers[n]
            try:
                c = pymysql.connect(host=s.host, port=s.port, user=self.lab.config.lab.app_user,
                                    password=self.lab.config.lab.app_password.reveal(),
                                    autocommit=False, ssl_disabled=True, connect_timeout=1,
                                    read_timeout=5, write_timeout=5)
                with c.cursor() as cur:
                    cur.execute("SELECT @@read_only")
                    row = cur.fetchone()
                if row and row[0] == 0:
                    return c
                c.close()
            except pymysql.MySQLError:
                continue
        return None

    idle_wait = 0.002  # seconds between looks for a writable server when none is

    def acknowledged(self, new_id: int, conn: pymysql.connections.Connection) -> None:
        """Called once COMMIT returned for ``new_id`` on ``conn`` (subclasses record more)."""
        self.acked.append(new_id)

    def run(self) -> None:
        conn = None
        seq = 0
        while not self.stop_event.is_set():
            if conn is None:
                conn = self._connect()
                if conn is None:
                    time.sleep(self.idle_wait)
                    continue
            seq += 1
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (n) VALUES (%s)", (seq,))
                    new_id = cur.lastrowid
                conn.commit()
                self.acknowledged(int(new_id), conn)
            except pymysql.MySQLError:
                self.errors += 1
                with contextlib.suppress(pymysql.MySQLError):
                    conn.close()
                conn = None
            time.sleep(0.001)
        if conn is not None:
            with contextlib.suppress(pymysql.MySQLError):
                conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


@dataclass(eq=False)
class ReadOnlyWatcher(threading.Thread):
    """Samples @@read_only on every node (control account) as fast as it can; records the
    largest number of writable servers seen in one sample."""

    lab: RunningLab
    max_writable: int = 0
    samples: int = 0
    bad: list[dict[str, int]] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        # The control account, not root: a root session is one that can write through
        # read_only, and preflight refuses a swap while one is open on --from.
        cfg = self.lab.config
        conns = {n: connect(cfg.server(n), cfg.mysql, timeout=2, tls=False, read_timeout=5)
                 for n in names(self.lab)}
        try:
            while not self.stop_event.is_set():
                sample = {}
                for n, c in conns.items():
                    with c.cursor() as cur:
                        cur.execute("SELECT @@read_only AS ro")
                        row = cur.fetchone()
                        sample[n] = int(row["ro"]) if row else 1
                writable = sum(1 for v in sample.values() if v == 0)
                self.max_writable = max(self.max_writable, writable)
                if writable > 1:
                    self.bad.append(sample)
                self.samples += 1
        finally:
            for c in conns.values():
                c.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def create_writes_table(lab: RunningLab, primary: str = "db1") -> None:
    lab.query(primary, "CREATE TABLE IF NOT EXISTS app.writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                       "n BIGINT NOT NULL, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")


def present_ids(lab: RunningLab, node: str, table: str = "app.writes") -> set[int]:
    return {int(r[0]) for r in lab.query(node, f"SELECT id FROM {table}")}


def back_to_db1(lab: RunningLab, *swap_args: str, recover_first: bool = False) -> None:
    """Leave ``lab`` as tests find it: db1 the primary, every replica healthy.  With
    ``recover_first``, finish whatever a test left interrupted (bounded) first."""
    if recover_first:
        for _ in range(3):
            if roleswap(lab, "recover", "--yes").returncode == 0:
                break
        time.sleep(1.2)  # replicas of a restarted node reconnect within connect_retry (1 s)
    prim = primary_of(snapshot(lab))
    if prim != ["db1"]:
        assert len(prim) == 1, prim
        code, out = swap(lab, prim[0], "db1", *swap_args)
        assert code == 0, out
    wait_healthy(lab, "db1")


def resync_replica(lab: RunningLab, name: str, primary: str = "db1") -> None:
    """Lab-only repair of a replica with errant GTIDs: forget its own binlog and take the
    primary's position (production would inject empty transactions on the primary)."""
    d = lab.dialect(name)
    lab.run(name, d.stop_replication())
    pos = lab.gtid_position(primary)
    lab.run(name, d.reset_binlogs() + d.adopt_gtid_position(pos) + d.start_replication())


def journal_path(lab: RunningLab) -> Path:
    """The lab's local journal file (JSON lines, one full record per write)."""
    from roleswap.swap.context import journal_dir

    return journal_dir(lab.config) / f"roleswap-{lab.config.cluster}.journal.jsonl"


def last_journal_step(lab: RunningLab) -> tuple[str, str] | None:
    """(name, status) of the last step in the lab's local journal file, or None."""
    try:
        steps = json.loads(journal_path(lab).read_text().splitlines()[-1])["steps"]
    except (OSError, ValueError, IndexError, KeyError):
        return None
    return (steps[-1]["name"], steps[-1]["status"]) if steps else None


class BackgroundSwap:
    """``roleswap --from A --to B --yes --json`` as its own process, while the test acts
    on the lab (with ROLESWAP_SLEEP_AT in ``env`` to hold it inside a window, or
    ``hold="<step>[:when]"``: it waits there until :meth:`release`)."""

    def __init__(self, lab: RunningLab, source: str, target: str, *extra: str,
                 env: dict[str, str] | None = None, hold: str = "") -> None:
        self._gate = lab.dir / f"hold-{os.getpid()}-{time.monotonic_ns()}"
        self._held = Path(f"{self._gate}.held")  # made by the swap when it gets there
        env = dict(env or {})
        if hold:
            env["ROLESWAP_HOLD_AT"] = f"{hold}={self._gate}"
        self.proc = subprocess.Popen(
            [*ROLESWAP, "-c", str(lab.config_path), "--from", source, "--to", target, "--yes",
             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **env})

    def wait_held(self, timeout: float = 60.0) -> None:
        """Until a swap started with ``hold=`` has got there (and waits)."""
        self.wait_for(self._held.exists, timeout)

    def release(self) -> None:
        """Let a swap started with ``hold=`` go on."""
        self._gate.touch()

    def wait_for(self, condition: Any, timeout: float = 30.0, every: float = 0.005) -> None:
        """Until ``condition()`` is true; fails if the swap exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline and self.proc.poll() is None, \
                self.proc.communicate()
            time.sleep(every)

    def result(self, timeout: float = 60.0) -> tuple[int, dict[str, Any], str]:
        """(exit code, the JSON report, everything printed)."""
        stdout, stderr = self.proc.communicate(timeout=timeout)
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        data = json.loads(lines[-1]) if lines else {}
        return self.proc.returncode, data, stdout + stderr

    def __enter__(self) -> BackgroundSwap:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._gate.unlink(missing_ok=True)
        self._held.unlink(missing_ok=True)


def recover_converges(lab: RunningLab, primary: str, says: str = "") -> None:
    """`roleswap recover --yes` exits 0 (printing ``says``), leaves ``primary`` healthy,
    and a second run finds nothing to recover (idempotent)."""
    rec = roleswap(lab, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert says in rec.stdout, rec.stdout
    wait_healthy(lab, primary)
    again = roleswap(lab, "recover", "--yes")
    assert again.returncode == 0 and "nothing to recover" in again.stdout
