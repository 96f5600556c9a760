"""The real-fault harness: a lab keeper, a tolerant read_only sampler, a writer that
remembers who acknowledged each row, a swap run with a real fault at a random offset,
the recover loop, and ONE invariant check shared by every case.

Times are ``time.monotonic()`` unless named ``wall`` (``time.time()``, only to line
up with the journal's timestamps).  No check depends on how fast anything is: every
wait is a bounded poll for a state, with bounds ~10x what the lab needs.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import redis

from intermission.controller import Controller
from roleswap.coord.endpoint import current_primary
from roleswap.coord.journal import Journal
from roleswap.coord.lock import ClusterLock
from roleswap.lab import Lab, lab_down, nodes
from roleswap.mysql.dialect import ReplicaStatus, dialect_for, gtid_wait_reached
from roleswap.swap.context import journal_dir
from tests.conftest import DEFAULT_SERVER, RunningLab, start_lab
from tests.integration.swaphelp import (
    ROLESWAP,
    Writer,
    create_writes_table,
    journal_path,
    roleswap,
    swap,
)

SOURCE, TARGET = "db1", "db2"
PAUSE_TTL = 3.0
SWAP_ARGS = ("--from", SOURCE, "--to", TARGET, "--yes", "--json", "--pause-ttl", f"{PAUSE_TTL:g}")
KINDS = ("from-kill", "to-kill", "redis-kill", "redis-stop", "redis-restart", "roleswap-kill")
INVARIANTS = ("one_writable", "writes", "replication", "recover", "sampler", "coordination")
# Bounds (each ~10x or more what the lab needs; they only run out when something is wrong):
SWAP_EXIT_TIMEOUT = 120.0  # a swap's own timeouts add up to ~30 s at worst; typical 0.35 s
SETTLE_TIMEOUT = 10.0  # one writable + replicas running after recover: typical <= 1.1 s
#   (a replica's IO thread retries its source every 1 s: MASTER_CONNECT_RETRY=1)
CATCHUP_TIMEOUT = 10  # GTID wait (MASTER_GTID_WAIT ...) once healthy: typical a few ms
PAUSE_END_TIMEOUT = 10 * PAUSE_TTL  # a leftover pause lease ends by itself within PAUSE_TTL
MAX_RECOVER_RUNS = 4
MIN_ACKED_BEFORE = 5  # acknowledged writes before the swap starts (else the data check is empty)
MIN_SAMPLER_ROUNDS = 50


def seed_from_env() -> int:
    """``ROLESWAP_FAULT_SEED`` to replay a run; otherwise derived from the time."""
    env = os.environ.get("ROLESWAP_FAULT_SEED", "").strip()
    return int(env) if env else int(time.time() * 1000) % 1_000_000_007


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def case_rng(seed: int, kind: str, case: int) -> random.Random:
    """One independent, replayable random stream per (seed, kind, case)."""
    return random.Random(f"{seed}/{kind}/{case}")


# -- servers as seen from outside ---------------------------------------------------------
def _sock(lab: RunningLab, name: str) -> Path:
    return Path(lab.lab.node(name).dir) / "mysqld.sock"


def mariadb_names(lab: RunningLab) -> list[str]:
    return sorted(lab.config.servers)


def root(lab: RunningLab, name: str, read_timeout: float = 15) -> pymysql.connections.Connection:
    """Root over the node's socket with short timeouts (a node may be down)."""
    return pymysql.connect(unix_socket=str(_sock(lab, name)), user="root", password="",
                           connect_timeout=1, read_timeout=read_timeout, autocommit=True,
                           ssl_disabled=True)


def rows(lab: RunningLab, name: str, sql: str, args: object = None,
         read_timeout: float = 15) -> list[dict[str, Any]]:
    conn = root(lab, name, read_timeout)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def node_state(lab: RunningLab, name: str) -> dict[str, Any]:
    """read_only, source, threads and errors of one node; ``up: False`` if unreachable."""
    ports = {lab.config.servers[n].port: n for n in mariadb_names(lab)}
    try:
        conn = root(lab, name, read_timeout=5)
    except pymysql.MySQLError as e:
        return {"up": False, "error": str(e)[:120]}
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT @@GLOBAL.read_only AS ro, VERSION() AS v")
            g = cur.fetchone() or {}
            d = dialect_for(str(g.get("v") or ""))  # the node's own SQL, whatever its flavor
            cur.execute(*d.gtid_position())
            pos = d.parse_gtid(str((cur.fetchone() or {}).get("g") or ""))
            cur.execute(*d.replica_status())
            reps = [ReplicaStatus.from_row(r) for r in cur.fetchall()]
    except pymysql.MySQLError as e:
        return {"up": False, "error": str(e)[:120]}
    finally:
        conn.close()
    out: dict[str, Any] = {"up": True, "read_only": int(g.get("ro", 1)),
                           "cnf_read_only": cnf_read_only(lab, name),
                           "gtid": str(pos), "channels": len(reps)}
    if reps:
        r = next((c for c in reps if c.channel == ""), reps[0])
        out.update(source=ports.get(r.source_port, f"port {r.source_port}"),
                   io=r.io_state, sql="Yes" if r.sql_running else "No",
                   io_errno=r.last_io_errno, sql_errno=r.last_sql_errno,
                   io_error=r.last_io_error[:200], sql_error=r.last_sql_error[:200])
    return out


def cnf_read_only(lab: RunningLab, name: str) -> bool:
    """Whether the node's my.cnf starts it read-only (what a restart brings back)."""
    try:
        text = (Path(lab.lab.node(name).dir) / "my.cnf").read_text()
    except OSError:
        return False
    return any(line.replace(" ", "") in ("read_only=1", "read_only=ON", "read-only=1")
               for line in text.splitlines())


def snapshot(lab: RunningLab) -> dict[str, dict[str, Any]]:
    return {n: node_state(lab, n) for n in mariadb_names(lab)}


def roles(snap: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What `recover` may change: reachability, read_only, source (not positions, not thread
    states that move by themselves while an IO thread reconnects)."""
    return {n: [s["up"], s.get("read_only"), s.get("source")] for n, s in snap.items()}


def writable(snap: dict[str, dict[str, Any]]) -> list[str]:
    return [n for n, s in snap.items() if s["up"] and s["read_only"] == 0]


def replication_problems(snap: dict[str, dict[str, Any]], primary: str) -> list[str]:
    out = []
    for n, s in snap.items():
        if n == primary:
            if s.get("channels"):
                out.append(f"{primary} (the primary) still has a replication channel to {s.get('source')}")
            continue
        if not s["up"]:
            out.append(f"{n} down")
        elif "source" not in s:
            out.append(f"{n} replicates from nothing")
        elif s["source"] != primary or s["io"] != "Yes" or s["sql"] != "Yes" \
                or s["io_errno"] or s["sql_errno"]:
            err = s["io_error"] or s["sql_error"]
            out.append(f"{n} source={s['source']} IO={s['io']} SQL={s['sql']}"
                       + (f" error {s['io_errno'] or s['sql_errno']}: {err}" if err else ""))
    return out


def describe(snap: dict[str, dict[str, Any]]) -> str:
    parts = []
    for n, s in snap.items():
        if not s["up"]:
            parts.append(f"{n}: DOWN")
            continue
        errno = s.get("io_errno") or s.get("sql_errno")
        rep = (f" <- {s['source']} {s['io']}/{s['sql']}" + (f" err {errno}" if errno else "")
               if "source" in s else "")
        parts.append(f"{n}: ro={s['read_only']}{rep} gtid={s['gtid']}"
                     + (" (my.cnf: read_only=1)" if s.get("cnf_read_only") else ""))
    return "; ".join(parts)


# -- the sampler --------------------------------------------------------------------------
@dataclass(eq=False)
class Sampler(threading.Thread):
    """Reads @@read_only on every node over its unix socket, in rounds, each read stamped
    with the midpoint of its query.  A node that does not answer is read as None (down).

    It logs in as the control account, not root: a session of an account that can write
    through read_only (root) open on --from makes preflight refuse the swap, while the
    control account's own sessions are expected there.
    """

    sockets: dict[str, Path]
    user: str
    password: str
    pause_s: float = 0.002
    reads: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)
    rounds: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.reads = {n: [] for n in self.sockets}

    def run(self) -> None:
        conns: dict[str, pymysql.connections.Connection | None] = dict.fromkeys(self.sockets)
        retry_at: dict[str, float] = dict.fromkeys(self.sockets, 0.0)
        try:
            while not self.stop_event.is_set():
                for n, sock in self.sockets.items():
                    t0 = time.monotonic()
                    value: int | None = None
                    c = conns[n]
                    if c is None and t0 >= retry_at[n]:
                        try:
                            c = conns[n] = pymysql.connect(
                                unix_socket=str(sock), user=self.user, password=self.password,
                                connect_timeout=0.5,
                                read_timeout=1, autocommit=True, ssl_disabled=True)
                        except pymysql.MySQLError:
                            retry_at[n] = time.monotonic() + 0.01
                    if c is not None:
                        try:
                            with c.cursor() as cur:
                                cur.execute("SELECT @@read_only")
                                row = cur.fetchone()
                            value = int(row[0]) if row else None
                        except pymysql.MySQLError:
                            with contextlib.suppress(Exception):
                                c.close()
                            conns[n] = None
                    self.reads[n].append(((t0 + time.monotonic()) / 2, value))
                self.rounds += 1
                time.sleep(self.pause_s)
        finally:
            for c in conns.values():
                if c is not None:
                    with contextlib.suppress(Exception):
                        c.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)

    def two_writable(self) -> list[tuple[float, str, str]]:
        """Moments PROVEN to have two writable servers: B read writable at t, and A read
        writable both at its last read before t and its first read after t (a read of A
        that failed, or read_only=1, in between proves nothing)."""
        found: list[tuple[float, str, str]] = []
        times = {n: [t for t, _ in r] for n, r in self.reads.items()}
        for b, reads in self.reads.items():
            for t, v in reads:
                if v != 0:
                    continue
                for a in self.reads:
                    if a == b:
                        continue
                    i = bisect.bisect_left(times[a], t)
                    if 0 < i < len(times[a]) and self.reads[a][i - 1][1] == 0 and self.reads[a][i][1] == 0:
                        first, second = sorted((a, b))
                        found.append((t, first, second))
        return sorted(set(found))


def make_sampler(lab: RunningLab) -> Sampler:
    return Sampler({n: _sock(lab, n) for n in mariadb_names(lab)}, lab.config.mysql.user,
                   lab.config.mysql.password.reveal())


def episodes(points: list[tuple[float, str, str]], t_ref: float, gap: float = 0.05) -> list[str]:
    """Group proven two-writable moments into episodes, described relative to ``t_ref``."""
    out: list[list[Any]] = []
    for t, a, b in points:
        if out and out[-1][2] == (a, b) and t - out[-1][1] <= gap:
            out[-1][1] = t
            out[-1][3] += 1
        else:
            out.append([t, t, (a, b), 1])
    return [f"{a}+{b} writable from {s - t_ref:+.3f}s to {e - t_ref:+.3f}s ({k} samples)"
            for s, e, (a, b), k in out]


# -- the writer ---------------------------------------------------------------------------
@dataclass(eq=False)
class FaultWriter(Writer):
    """:class:`Writer` (app account, first writable server in name order, acknowledged only
    after COMMIT) that also remembers which server acknowledged each id."""

    acked_on: dict[int, str] = field(default_factory=dict)
    idle_wait = 0.01  # nothing writable: look again soon, without a connection storm on 2 cores

    def acknowledged(self, new_id: int, conn: pymysql.connections.Connection) -> None:
        self.acked.append(new_id)
        by_port = {self.lab.config.servers[n].port: n for n in self.lab.config.servers}
        self.acked_on[new_id] = by_port.get(int(conn.port), str(conn.port))


# -- the lab keeper -----------------------------------------------------------------------
class LabKeeper:
    """Owns the suite's lab: brings it back to db1 primary + all healthy between cases,
    and rebuilds it from nothing when that cannot be verified."""

    def __init__(self, directory: Path, flavor: str = DEFAULT_SERVER) -> None:
        self.directory = directory
        self.flavor = flavor
        self.lab: RunningLab = self._build()
        self.rebuilds: list[str] = []
        self.broken = ""  # set when a case failed: rebuild at once rather than probe for 10 s

    def _build(self) -> RunningLab:
        lab_down(self.directory)
        lab = RunningLab(start_lab(self.directory, self.flavor))
        create_writes_table(lab)
        return lab

    def rebuild(self, why: str) -> str:
        self.rebuilds.append(why)
        self.broken = ""
        self.lab = self._build()
        return f"rebuilt ({why})"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            for n in self.lab.lab.nodes:  # never leave a SIGSTOPped server behind
                if n.alive():
                    os.kill(n.pid, signal.SIGCONT)
        lab_down(self.directory)

    def ensure_known_state(self) -> str:
        """db1 primary, db2/db3 replicating from it, same data, no swap pending, lock free."""
        why = self.broken or self._why_not_reusable()
        if why:
            return self.rebuild(why)
        prim = writable(snapshot(self.lab))[0]
        if prim != SOURCE:
            code, out = swap(self.lab, prim, SOURCE)
            if code != 0:
                return self.rebuild(f"swap back {prim}->db1 failed: {out.get('error')}")
            why = self._why_not_reusable()
            if why:
                return self.rebuild(f"after swapping back: {why}")
            return "swapped back to db1"
        return "reused"

    def _why_not_reusable(self) -> str:
        lab = self.lab
        state = Lab.load(lab.dir)
        down = [n.name for n in state.nodes if not n.alive()]
        if down:
            return f"not running: {down}"
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            snap = snapshot(lab)
            w = writable(snap)
            problems = replication_problems(snap, w[0]) if len(w) == 1 else [f"writable: {w}"]
            if not problems:
                break
            if time.monotonic() > deadline:
                return "; ".join(problems)
            time.sleep(0.05)
        try:
            coord = coordination_problems(lab, w[0], wait_pause=PAUSE_END_TIMEOUT)
        except redis.RedisError as e:
            return f"redis: {type(e).__name__}"
        if coord:
            return "; ".join(coord)
        sums = data_state(lab, w[0], set(), {}, healthy=True)
        if len(set(sums["checksums"].values())) != 1:
            return f"data differs: {sums['checksums']}"
        return ""


# -- timeline (measured) --------------------------------------------------------------------
@dataclass
class Timeline:
    """A swap's life on this box, measured from its journal: process start -> journal begin
    (``pre``: start-up + preflight), begin -> resume done (``ponr``), begin -> last step
    (``steps``).  Seeded by clean swaps under the same writer + sampler load, then fed by
    every case whose measurement the fault did not disturb, so offsets follow the box's
    current load (other engineers' tests share these 2 cores).  Uses the last WINDOW values.
    """

    pre: list[float]
    ponr: list[float]
    steps: list[float]
    wall: list[float]
    WINDOW = 8

    def observe(self, timing: dict[str, float | None]) -> None:
        for key in ("pre", "ponr", "steps"):
            value = timing.get(key)
            if value is not None:
                getattr(self, key).append(value)

    def summary(self) -> str:
        def f(v: list[float]) -> str:
            return f"median {statistics.median(v):.3f}s [{min(v):.3f}..{max(v):.3f}] (n={len(v)})"
        return (f"start->journal begin {f(self.pre)}; begin->resume done (point of no return) "
                f"{f(self.ponr)}; begin->last step {f(self.steps)}; whole process {f(self.wall)}")

    def plan(self, case: int, cases: int, rng: random.Random) -> tuple[str, float, str]:
        """(anchor, delay, stratum) for case ``case`` of ``cases``: a random delay after an
        anchor, stratified over the swap's measured life.

        * case 0: after the process start, inside start-up/preflight;
        * the last case: after the process start, from the end of the steps to past the exit;
        * the others: after the journal's begin record appears (watched from outside),
          alternately before the point of no return (lock..resume) and after it
          (demote..unlock), each group split into even strata.  Anchoring these on the
          journal, not the process start, is what makes them land in the steps: start-up +
          preflight jitter under load (~+-100 ms) exceeds the whole step window (~60 ms).
        """
        pre = self.pre[-self.WINDOW:]
        ponr = statistics.median(self.ponr[-self.WINDOW:])
        steps = max(self.steps[-self.WINDOW:])
        if cases >= 3 and case == 0:
            return "start", rng.uniform(0.0, min(pre) * 0.95), "start-up/preflight"
        if cases >= 3 and case == cases - 1:
            lo = statistics.median(pre) + steps
            return "start", rng.uniform(lo, max(lo, max(self.wall[-self.WINDOW:])) * 1.5), "after the steps"
        middle = list(range(1, cases - 1)) if cases >= 3 else list(range(cases))
        before = middle[0::2]  # 1, 3, 5...: before the point of no return
        after = middle[1::2]
        group, lo, hi = (before, 0.0, ponr) if case in before else (after, ponr, steps)
        k, m = group.index(case), len(group)
        label = "before the point of no return" if group is before else "after the point of no return"
        return "begin", rng.uniform(lo + (hi - lo) * k / m, lo + (hi - lo) * (k + 1) / m), \
            f"{label} {k + 1}/{m}"


def read_journal(lab: RunningLab) -> dict[str, Any] | None:
    """The journal file's last complete record (the swap's own local mirror)."""
    with contextlib.suppress(OSError):
        for line in reversed(journal_path(lab).read_text().splitlines()):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                return data if isinstance(data, dict) else None
    return None


def wait_journal_begin(lab: RunningLab, wall_start: float, proc: subprocess.Popen[bytes],
                       timeout: float) -> float | None:
    """monotonic() when this swap's journal begin record is seen in the file (polled every
    0.5 ms from outside), or None if the process exits first (refused in preflight)."""
    path = journal_path(lab)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            first = path.read_text().split("\n", 1)[0]
            if json.loads(first).get("started_at", 0) >= wall_start:
                return time.monotonic()
        time.sleep(0.0005)
    return None


def timing_of(record: dict[str, Any] | None, wall_start: float,
              wall_fault: float = float("inf")) -> dict[str, float | None]:
    """A swap's pre / ponr / steps durations from its journal, each only if it was complete
    before the fault (an undisturbed measurement)."""
    out: dict[str, float | None] = {"pre": None, "ponr": None, "steps": None}
    if record is None or record.get("started_at", 0) < wall_start or not record.get("steps"):
        return out
    begin = record["started_at"]
    if begin <= wall_fault:
        out["pre"] = begin - wall_start
    resumed = [e["at"] for e in record["steps"] if e["name"] == "resume" and e["status"] == "done"]
    if resumed and resumed[0] <= wall_fault:
        out["ponr"] = resumed[0] - begin
    last = record["steps"][-1]
    if record.get("phase") == "done" and last["at"] <= wall_fault:
        out["steps"] = last["at"] - begin
    return out


def calibrate(lab: RunningLab, rounds: int = 2) -> Timeline:
    """Clean swaps db1->db2->db1 under the same writer + sampler load as the cases; every
    one must succeed (the suite's control)."""
    tl = Timeline([], [], [], [])
    writer = FaultWriter(lab)
    sampler = make_sampler(lab)
    writer.start()
    sampler.start()
    try:
        for _ in range(rounds):
            for src, dst in ((SOURCE, TARGET), (TARGET, SOURCE)):
                w0, t0 = time.time(), time.monotonic()
                res = roleswap(lab, "--from", src, "--to", dst, "--yes", "--json",
                               "--pause-ttl", f"{PAUSE_TTL:g}", timeout=SWAP_EXIT_TIMEOUT)
                tl.wall.append(time.monotonic() - t0)
                assert res.returncode == 0, f"clean swap {src}->{dst} failed: {res.stdout} {res.stderr}"
                timing = timing_of(read_journal(lab), w0)
                assert None not in timing.values(), f"journal of a clean swap incomplete: {timing}"
                tl.observe(timing)
    finally:
        writer.stop()
        sampler.stop()
    return tl


# -- one case -----------------------------------------------------------------------------------
@dataclass
class RecoverRun:
    rc: int | None
    action: str  # none | finish | roll back | reopen | failed | hung
    reason: str
    output: str
    roles_before: dict[str, Any]
    roles_after: dict[str, Any]

    def brief(self) -> str:
        return f"{self.rc}:{self.action}"

    def short(self) -> str:
        last = [ln for ln in self.output.splitlines() if ln.strip()][-1:] or [""]
        why = f" ({self.reason})" if self.reason else ""
        return f"rc={self.rc} {self.action}{why}: {last[0].strip()[:160]}"


def run_recover(lab: RunningLab) -> RecoverRun:
    before = roles(snapshot(lab))
    try:
        res = roleswap(lab, "recover", "--yes", timeout=SWAP_EXIT_TIMEOUT)
        rc: int | None = res.returncode
        out = res.stdout + ("\n[stderr] " + res.stderr if res.stderr.strip() else "")
    except subprocess.TimeoutExpired as e:
        rc, out = None, f"recover did not exit within {SWAP_EXIT_TIMEOUT:g}s: {e.stdout!r}"
    action, reason = ("hung" if rc is None else "failed"), ""
    for line in out.splitlines():
        if "nothing to recover" in line:
            action = "none"
        elif line.startswith("recover will "):
            rest = line[len("recover will "):]
            action = next((a for a in ("roll back", "make") if rest.startswith(a)), "finish")
            action = "reopen" if action == "make" else action  # "recover will make X writable"
            # "recover will finish (why)" or "recover will finish: why"
            cut = min((i for i in (rest.find("("), rest.find(":")) if i >= 0), default=-1)
            if cut >= 0:
                reason = rest[cut + 1:].strip().rstrip(")")
    if rc not in (0, None) and action in ("finish", "roll back", "reopen"):
        action = f"{action} FAILED"
    return RecoverRun(rc, action, reason, out, before, roles(snapshot(lab)))


def recover_until_quiet(lab: RunningLab) -> list[RecoverRun]:
    """`recover --yes` until a run that follows another says nothing to do (bounded)."""
    runs: list[RecoverRun] = []
    for i in range(MAX_RECOVER_RUNS):
        runs.append(run_recover(lab))
        if i >= 1 and runs[-1].rc == 0 and runs[-1].action == "none":
            break
    return runs


def coordination_problems(lab: RunningLab, primary: str | None, wait_pause: float) -> list[str]:
    """No interrupted swap, cluster lock free, pause ended, published endpoint right or absent."""
    assert lab.config.redis_url is not None
    client = redis.Redis.from_url(lab.config.redis_url.reveal(), socket_timeout=2,
                                  socket_connect_timeout=2)
    try:
        out = []
        rec = Journal(client, lab.config.cluster, journal_dir(lab.config)).interrupted()
        if rec is not None:
            last = rec["steps"][-1] if rec.get("steps") else {}
            out.append(f"journal still shows an interrupted swap (phase {rec.get('phase')}, "
                       f"last step {last.get('name')} {last.get('status')})")
        holder = ClusterLock(client, lab.config.cluster, 1).holder()
        if holder is not None:
            out.append(f"cluster lock still held by swap {holder.get('swap_id')} "
                       f"(ttl {client.pttl(ClusterLock(client, lab.config.cluster, 1).key)} ms)")
        ctl = Controller(client, lab.config.scope)
        deadline = time.monotonic() + wait_pause
        while ctl.status().paused:
            if time.monotonic() > deadline:
                out.append(f"traffic still paused {wait_pause:g}s after recover")
                break
            time.sleep(0.1)
        pub = current_primary(client, lab.config.cluster)
        if pub is not None and pub.get("name") != primary:
            out.append(f"published endpoint names {pub.get('name')}, the writable server is {primary}")
        return out
    finally:
        client.close()


def data_state(lab: RunningLab, primary: str | None, acked: set[int], acked_on: dict[int, str],
               healthy: bool) -> dict[str, Any]:
    """Wait for the replicas to apply the primary's position, then: acknowledged ids missing
    per node (with who acknowledged them) and CHECKSUM TABLE per node."""
    names = mariadb_names(lab)
    caught: dict[str, Any] = {}
    if primary is not None:
        pos = lab.gtid_position(primary)
        for n in names:
            if n != primary:
                with contextlib.suppress(pymysql.MySQLError):
                    sql, params = lab.dialect(n).wait_for_gtid(pos, CATCHUP_TIMEOUT if healthy else 1)
                    r = rows(lab, n, sql, params, read_timeout=CATCHUP_TIMEOUT + 5)
                    caught[n] = gtid_wait_reached(next(iter(r[0].values())))
    missing: dict[str, Any] = {}
    checksums: dict[str, Any] = {}
    for n in names:
        try:
            present = {int(r["id"]) for r in rows(lab, n, "SELECT id FROM app.writes")}
            checksums[n] = rows(lab, n, "CHECKSUM TABLE app.writes")[0]["Checksum"]
        except pymysql.MySQLError as e:
            missing[n] = f"unreadable: {e}"
            checksums[n] = None
            continue
        lost = sorted(acked - present)
        if lost:
            who = Counter(acked_on.get(i, "?") for i in lost)
            missing[n] = {"count": len(lost), "acked_by": dict(who), "ids": lost[:5]}
    return {"caught_up": caught, "missing": missing, "checksums": checksums}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_invariants(lab: RunningLab, writer: FaultWriter, sampler: Sampler, t_fault: float,
                     t_recovered: float, runs: list[RecoverRun]) -> tuple[list[Check], dict[str, Any]]:
    """THE invariants every case ends with.  Stops ``writer`` and ``sampler``.

    1. one_writable   exactly one writable server, every server up (bounded wait)
    2. replication    every other server replicates from it, both threads, no error
    3. coordination   no interrupted swap, lock free, pause over, endpoint right or absent
    4. writes         every acknowledged id on every server; CHECKSUM TABLE equal once caught up
    5. recover        converged within MAX_RECOVER_RUNS; the run after the first successful one
                      said "nothing to recover" and did not change the topology
    6. sampler        no PROVEN two-writable moment outside [fault, end of recover]
    """
    checks: list[Check] = []
    evidence: dict[str, Any] = {}
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        snap = snapshot(lab)
        w = writable(snap)
        down = [n for n, s in snap.items() if not s["up"]]
        if (len(w) == 1 and not down) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    primary = w[0] if len(w) == 1 else None
    checks.append(Check("one_writable", primary is not None and not down,
                        f"writable={w} down={down}"))
    problems = ["no single primary"]
    if primary is not None:
        while True:
            snap = snapshot(lab)
            problems = replication_problems(snap, primary) if writable(snap) == [primary] else \
                [f"writable changed to {writable(snap)}"]
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    evidence["topology_after"] = describe(snap)
    checks.append(Check("replication", not problems, "; ".join(problems) or f"all replicate from {primary}"))
    try:
        coord = coordination_problems(lab, primary, wait_pause=PAUSE_END_TIMEOUT)
    except redis.RedisError as e:
        coord = [f"redis unreachable: {type(e).__name__}: {e}"]
    checks.append(Check("coordination", not coord, "; ".join(coord) or "clean"))

    writer.stop()
    acked = set(writer.acked)
    data = data_state(lab, primary, acked, writer.acked_on, healthy=not problems)
    evidence["writes"] = {"acked": len(acked), "errors": writer.errors,
                          "acked_by": dict(Counter(writer.acked_on.values())), **data}
    ok = bool(acked) and not data["missing"] and len(set(data["checksums"].values())) == 1
    checks.append(Check("writes", ok, f"{len(acked)} acked; missing {data['missing'] or 'none'}; "
                                      f"checksums {data['checksums']}"))

    first_ok = next((i for i, r in enumerate(runs) if r.rc == 0), None)
    nxt = runs[first_ok + 1] if first_ok is not None and first_ok + 1 < len(runs) else None
    converged = bool(runs) and runs[-1].rc == 0 and runs[-1].action == "none"
    idempotent = nxt is not None and nxt.rc == 0 and nxt.action == "none" \
        and nxt.roles_before == nxt.roles_after
    detail = " | ".join(f"#{i + 1} {r.short()}" for i, r in enumerate(runs))
    if nxt is not None and nxt.roles_before != nxt.roles_after:
        detail += f" | topology changed by the second run: {nxt.roles_before} -> {nxt.roles_after}"
    checks.append(Check("recover", converged and idempotent, detail))

    sampler.stop()
    proven = sampler.two_writable()
    outside = [p for p in proven if not t_fault <= p[0] <= t_recovered]
    inside = [p for p in proven if t_fault <= p[0] <= t_recovered]
    evidence["sampler"] = {"rounds": sampler.rounds, "outside": episodes(outside, t_fault),
                           "inside": episodes(inside, t_fault)}
    checks.append(Check(
        "sampler", sampler.rounds >= MIN_SAMPLER_ROUNDS and not outside,
        f"{sampler.rounds} rounds; outside the crash->recover window: "
        f"{episodes(outside, t_fault) or 'none'}; inside (tolerated): {episodes(inside, t_fault) or 'none'}"))
    return checks, evidence


@dataclass
class CaseRecord:
    kind: str
    case: int
    seed: int
    anchor: str
    offset: float
    stratum: str
    fault: dict[str, Any] = field(default_factory=dict)
    landed: str = ""
    swap: dict[str, Any] = field(default_factory=dict)
    recover: list[str] = field(default_factory=list)
    recover_brief: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    timing: dict[str, float | None] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = self.failed
        return d

    def explain(self) -> str:
        head = (f"[{self.kind} #{self.case}] ROLESWAP_FAULT_SEED={self.seed} fault {self.offset:.3f}s "
                f"after {'the process start' if self.anchor == 'start' else 'the journal begin'} "
                f"({self.stratum}); landed: {self.landed}")
        lines = [head, f"  fault: {self.fault}", f"  swap: rc={self.swap.get('rc')} "
                 f"{self.swap.get('summary', '')}"]
        if "journal" in self.evidence:
            lines.append("  swap journal (time relative to the fault): "
                         + ", ".join(self.evidence["journal"]))
        lines += [f"  recover {r}" for r in self.recover]
        lines.append(f"  topology after: {self.evidence.get('topology_after')}")
        w = self.evidence.get("writes", {})
        lines.append(f"  writes: {w.get('acked')} acked by {w.get('acked_by')}, {w.get('errors')} errors")
        for c in self.checks:
            lines.append(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
        return "\n".join(lines)


def _swap_summary(stdout: str, stderr: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"summary": f"no JSON output; stderr: {stderr.strip()[-300:]}"}
    data = json.loads(lines[-1])
    steps = " ".join(f"{s['name']}:{s['status']}" for s in data.get("steps", []))
    err = data.get("error") or {}
    msg = str(err.get("message", "")).splitlines()[0] if err else ""
    failed_checks = [c["name"] for c in data.get("checks", []) if c.get("status") == "fail"]
    return {"summary": (f"ok={data.get('ok')} rolled_back={data.get('rolled_back')} "
                        f"steps[{steps}] " + (f"preflight-fail{failed_checks} " if failed_checks else "")
                        + (f"error={msg!r}" if msg else "")),
            "ok": data.get("ok"), "rolled_back": data.get("rolled_back"), "error": msg}


def landed(record: dict[str, Any] | None, wall_start: float, wall_fault: float) -> str:
    """Where the swap was when the fault hit, from the journal's own timestamps."""
    if record is None or record.get("started_at", 0) < wall_start:
        return "before the journal began (preflight, or the swap never started)"
    if wall_fault < record["started_at"]:
        return "preflight (journal begun after the fault)"
    steps = record.get("steps", [])
    before = [s for s in steps if s["at"] <= wall_fault]
    if not before:
        return "journal begun, before the first step"
    last = before[-1]
    if len(before) == len(steps) and record.get("phase") not in ("running", "recovering"):
        return f"after the swap ended (phase {record.get('phase')}, last {last['name']} {last['status']})"
    return f"{last['name']} {last['status']} (+{(wall_fault - last['at']) * 1000:.1f} ms)"


def keep_server_logs(lab: RunningLab, out_dir: Path, lines: int = 60) -> None:
    """Copy the tail of every node's error log and its my.cnf next to the case's evidence
    (the lab directory may be rebuilt before anyone reads them)."""
    for n in mariadb_names(lab):
        d = Path(lab.lab.node(n).dir)
        with contextlib.suppress(OSError):
            tail = d.joinpath("error.log").read_text(errors="replace").splitlines()[-lines:]
            (out_dir / f"{n}.error.log").write_text("\n".join(tail) + "\n")
            (out_dir / f"{n}.my.cnf").write_text(d.joinpath("my.cnf").read_text())


def run_case(lab: RunningLab, kind: str, anchor: str, offset: float, stratum: str,
             rng: random.Random, seed: int, case: int, out_dir: Path) -> CaseRecord:
    """One swap db1->db2 with ``kind`` of fault ``offset`` s after ``anchor`` ("start": the
    process started, "begin": its journal began), then restart what was killed, recover
    until quiet, and check the invariants."""
    rec = CaseRecord(kind, case, seed, anchor, offset, stratum)
    t_case = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    sampler = make_sampler(lab)
    sampler.start()
    writer = FaultWriter(lab)
    writer.start()
    proc: subprocess.Popen[bytes] | None = None
    stopped_redis = False
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while len(writer.acked) < MIN_ACKED_BEFORE:
            assert time.monotonic() < deadline, f"writer acknowledged nothing ({writer.errors} errors)"
            time.sleep(0.01)
        env = {k: v for k, v in os.environ.items() if k not in ("ROLESWAP_FAIL_AT", "ROLESWAP_KILL_AT")}
        so, se = (out_dir / "swap.out").open("wb"), (out_dir / "swap.err").open("wb")
        wall_start, t_start = time.time(), time.monotonic()
        proc = subprocess.Popen([*ROLESWAP, "-c", str(lab.config_path), *SWAP_ARGS],
                                stdout=so, stderr=se, env=env)
        t_anchor = t_start
        if anchor == "begin":
            seen = wait_journal_begin(lab, wall_start, proc, SWAP_EXIT_TIMEOUT)
            if seen is None:
                rec.fault["anchor"] = "the swap exited without beginning its journal"
            t_anchor = time.monotonic() if seen is None else seen
        time.sleep(max(0.0, t_anchor + offset - time.monotonic()))
        t_fault, wall_fault = time.monotonic(), time.time()
        rec.fault["swap_running_at_fault"] = proc.poll() is None
        rec.fault["at"] = round(t_fault - t_start, 4)
        if kind in ("from-kill", "to-kill"):
            name = SOURCE if kind == "from-kill" else TARGET
            down_s = rng.uniform(0.0, 1.0)
            rec.fault["killed"] = f"kill -9 {name} mariadbd pid {nodes.kill_node(lab.dir, name)}"
            time.sleep(down_s)
            rec.fault["restarted"] = f"after {down_s:.3f}s, pid {nodes.start_node_again(lab.dir, name)}"
        elif kind == "redis-restart":
            rec.fault["killed"] = f"kill -9 redis pid {nodes.kill_node(lab.dir, 'redis')}"
            rec.fault["restarted"] = f"at once (data lost), pid {nodes.start_node_again(lab.dir, 'redis')}"
        elif kind == "redis-kill":
            rec.fault["killed"] = f"kill -9 redis pid {nodes.kill_node(lab.dir, 'redis')}"
        elif kind == "redis-stop":
            stop_s = rng.uniform(1.0, 5.0)
            rec.fault["stopped"] = f"SIGSTOP redis pid {nodes.kill_node(lab.dir, 'redis', signal.SIGSTOP)}"
            stopped_redis = True
            time.sleep(stop_s)
            nodes.kill_node(lab.dir, "redis", signal.SIGCONT)
            stopped_redis = False
            rec.fault["continued"] = f"SIGCONT after {stop_s:.3f}s"
        elif kind == "none":
            rec.fault["none"] = "control: no fault"
        elif kind == "roleswap-kill":
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                rec.fault["killed"] = f"kill -9 roleswap pid {proc.pid}"
            else:
                rec.fault["killed"] = "roleswap had already exited"
        else:
            raise ValueError(kind)
        try:
            rc: int | None = proc.wait(SWAP_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
            rec.fault["swap_hung"] = f"still running {SWAP_EXIT_TIMEOUT:g}s after start; killed"
        so.close()
        se.close()
        if kind == "redis-kill":
            rec.fault["restarted"] = (f"after the swap exited (data lost), "
                                      f"pid {nodes.start_node_again(lab.dir, 'redis')}")
        stdout = (out_dir / "swap.out").read_text(errors="replace")
        stderr = (out_dir / "swap.err").read_text(errors="replace")
        rec.swap = {"rc": rc, **_swap_summary(stdout, stderr)}
        journal = read_journal(lab)
        rec.landed = landed(journal, wall_start, wall_fault)
        rec.timing = timing_of(journal, wall_start, wall_fault)
        if journal is not None and journal.get("started_at", 0) >= wall_start:
            rec.evidence["journal"] = [f"{e['name']} {e['status']} {(e['at'] - wall_fault) * 1000:+.1f}ms"
                                       for e in journal.get("steps", [])]
        runs = recover_until_quiet(lab)
        t_recovered = time.monotonic()
        if kind == "none":  # no crash: the tolerated window is empty
            t_fault = t_recovered = t_start
            rec.landed = "no fault"
        rec.recover = [r.short() for r in runs]
        rec.recover_brief = [r.brief() for r in runs]
        for i, r in enumerate(runs):
            (out_dir / f"recover-{i + 1}.out").write_text(r.output)
        rec.checks, evidence = check_invariants(lab, writer, sampler, t_fault, t_recovered, runs)
        rec.evidence.update(evidence)
        if rec.failed:
            keep_server_logs(lab, out_dir)
    finally:
        if stopped_redis:
            with contextlib.suppress(Exception):
                nodes.kill_node(lab.dir, "redis", signal.SIGCONT)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        writer.stop()
        sampler.stop()
        rec.seconds = round(time.monotonic() - t_case, 2)
        (out_dir / "case.json").write_text(json.dumps(rec.as_dict(), indent=2, default=str))
    return rec
