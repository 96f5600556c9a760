"""Everything a swap's steps share: options, connections, journal, Redis, switch method.

The context deliberately holds no *state of the servers*: steps read what they
need fresh (``ctx.topology()``), and what must survive a crash (captured
positions, tokens) goes into the journal's ``state`` via ``ctx.remember``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from roleswap.config import Config, ServerConfig
from roleswap.coord import client as redis_client
from roleswap.coord.journal import Journal
from roleswap.errors import StepError
from roleswap.mysql import conn as mconn
from roleswap.mysql.dialect import Dialect, Stmt, dialect_for
from roleswap.mysql.topology import Topology, read_topology

if TYPE_CHECKING:
    from pymysql.connections import Connection

    from roleswap.switch.base import SwitchMethod

# Test-only fault injection (documented in the README): make a step fail, or kill
# roleswap with SIGKILL, at a named point.  Values: "<step>" or "<step>:<when>"
# with when = before | after (default before).
FAIL_ENV = "ROLESWAP_FAIL_AT"
KILL_ENV = "ROLESWAP_KILL_AT"
# "<step>[:<when>]=<seconds>": sleep there, so a test can act in a window for real
SLEEP_ENV = "ROLESWAP_SLEEP_AT"
# "<step>[:<when>]=<path>": wait there until <path> exists (at most HOLD_LIMIT seconds), so a
# test holds the swap for exactly as long as its action takes, however slow the machine;
# <path>.held is created when the swap gets there
HOLD_ENV = "ROLESWAP_HOLD_AT"
HOLD_LIMIT = 300.0


@dataclass(frozen=True)
class SwapOptions:
    switch_method: str = "endpoint"
    pause: bool = True
    max_lag: float = 5.0
    drain_timeout: float = 5.0
    drain_policy: str = "proceed"  # or "abort"
    catchup_timeout: float = 10.0
    pause_ttl: float = 30.0
    fence_timeout: int = 2
    long_trx: float = 10.0
    lock_ttl: float = 120.0
    kill_privileged: bool = False  # kill sessions that bypass read_only right after the fence

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SwapContext:
    def __init__(self, config: Config, source: str, target: str, opts: SwapOptions,
                 swap_id: str | None = None) -> None:
        self.config = config
        self.source = source
        self.target = target
        self.opts = opts
        self.swap_id = swap_id or uuid.uuid4().hex[:12]
        self.redis: redis.Redis | None = None
        self.redis = redis_client.connect(config)
        self.journal = Journal(self.redis, config.cluster, journal_dir(config))
        self._conns: dict[str, Connection[Any]] = {}
        self._dialects: dict[str, Dialect] = {}
        self.switch: SwitchMethod | None = None
        self.pause_handle: Any = None
        self.resumed_handle: Any = None  # its ack subscription is closed after the window
        self.pause_acks: Any = None  # the apps' acks, subscribed to before the pause
        self.pause_controller: Any = None  # intermission's Controller (steps_traffic)
        self.notes: list[str] = []  # warnings worth showing in the report
        self.redis_master: str | None = None  # Sentinel: host:port written to (redis_failover)

    # -- servers ----------------------------------------------------------------
    def server(self, name: str) -> ServerConfig:
        return self.config.server(name)

    def topology(self) -> Topology:
        """A fresh snapshot of every configured server."""
        return read_topology(self.config)

    def conn(self, name: str) -> Connection[Any]:
        """A control connection to ``name``, opened once per swap and reused (0.5 ms
        saved per statement matters inside the pause window)."""
        c = self._conns.get(name)
        if c is not None and c.open:
            return c
        c = mconn.connect(self.server(name), self.config.mysql, timeout=self.config.connect_timeout,
                          tls=self.config.tls, read_timeout=self.opts.catchup_timeout + 10)
        self._conns[name] = c
        return c

    def dialect(self, name: str) -> Dialect:
        """The SQL dialect of ``name`` (asked once per swap; raises :class:`ServerError`)."""
        d = self._dialects.get(name)
        if d is None:
            rows = self.query(name, "SELECT @@GLOBAL.version AS v")
            d = dialect_for(str(rows[0]["v"]))
            self._dialects[name] = d
        return d

    def run(self, name: str, stmts: list[Stmt]) -> list[dict[str, Any]]:
        """Run ``stmts`` on ``name``; every failure is a :class:`ServerError` naming it."""
        return mconn.run(self.conn(name), self.server(name), stmts)

    def query(self, name: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """One statement on ``name``; every failure is a :class:`ServerError` naming it."""
        return self.run(name, [(sql, params)])

    def siblings(self, topo: Topology | None = None) -> list[str]:
        """Other replicas of the source (they will be repointed to the target)."""
        topo = topo or self.topology()
        return [s.name for s in topo.replicas_of(self.source) if s.name != self.target]

    def close(self) -> None:
        if self.pause_acks is not None:  # prepared, and the pause never came
            from intermission.drain import close_acks

            close_acks(self.pause_acks)
            self.pause_acks = None
        if self.pause_handle is not None:  # never resumed by us (its lease ends at its TTL)
            self.pause_handle.close_subscription()
        if self.resumed_handle is not None:  # resumed: its subscription was left for now
            self.resumed_handle.close_subscription()
            self.resumed_handle = None
        for c in self._conns.values():
            with contextlib.suppress(Exception):  # closing a dead connection is not an error
                c.close()
        self._conns.clear()
        self.journal.close()
        if self.switch is not None:
            self.switch.close()

    # -- journal ----------------------------------------------------------------
    @property
    def state(self) -> dict[str, Any]:
        return self.journal.state

    def remember(self, **values: Any) -> None:
        self.journal.set_state(**values)

    def remember_with_end(self, **values: Any) -> None:
        """Like :meth:`remember`, but written with the step's end record (which follows
        at once): only for the last thing a step does."""
        self.journal.stage(**values)

    # -- fault injection (tests) --------------------------------------------------
    def failpoint(self, step: str, when: str) -> None:
        sleep = _armed(SLEEP_ENV, step, when)
        if sleep is not None:
            time.sleep(float(sleep or 1))
        hold = _armed(HOLD_ENV, step, when)
        if hold is not None:
            _wait_for_file(Path(hold), f"{HOLD_ENV}={os.environ[HOLD_ENV]}")
        for env, action in ((KILL_ENV, "kill"), (FAIL_ENV, "fail")):
            if _armed(env, step, when) is None:
                continue
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise StepError(f"injected failure at {step} ({env}={os.environ[env]})",
                            remedy=f"unset {env}; it is for tests only")


def _armed(env: str, step: str, when: str) -> str | None:
    """The value after ``=`` of ``env`` = "<step>[:<when>][=<value>]" (``when`` defaults
    to before) when it names this point ("" without a value), else None."""
    where, _, value = os.environ.get(env, "").partition("=")
    name, _, at = where.partition(":")
    return value if name and name == step and (at or "before") == when else None


def _wait_for_file(path: Path, spec: str) -> None:
    Path(f"{path}.held").touch()  # tells the test the swap got here
    deadline = time.monotonic() + HOLD_LIMIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise StepError(f"{spec}: {path} did not appear within {HOLD_LIMIT:.0f} s",
                            remedy=f"unset {HOLD_ENV}; it is for tests only")
        time.sleep(0.005)


def journal_dir(config: Config) -> Path:
    if config.journal_dir:
        return Path(config.journal_dir)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "roleswap"
