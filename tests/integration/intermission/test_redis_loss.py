"""The pause key lost with Redis (kill -9 + restart without persistence), Redis frozen
(SIGSTOP/SIGCONT) and Redis gone for good, during a pause, with real app servers.

The rule under test: a process releases held requests only on a resume carrying its
pause token, or at the lease's expiry by its own monotonic clock -- never because the
key vanished.  Times are only used as order (not before X), never as a speed bound.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from intermission import Controller, IntermissionError, RedisUnavailableError, ResumeOutcome
from intermission.cli import cli
from intermission.wsgi import IntermissionMiddleware
from roleswap.lab.redis_server import RedisServer, start_redis
from tests.integration.intermission.conftest import (
    AppServer,
    Client,
    new_scope,
    wait_for,
    wait_processes,
)

pytestmark = pytest.mark.timeout(120)

# the app's watcher re-reads the key every 1 s: sleeping this long after it is back on the
# empty Redis lets it poll the missing key at least twice
TWO_POLLS = 2.5


def kill9(server: RedisServer) -> None:
    os.kill(server.pid, signal.SIGKILL)  # our own fixture's redis-server
    assert wait_for(lambda: not server.alive(), 10.0), "redis-server survived SIGKILL"


def restart_empty(server: RedisServer) -> RedisServer:
    """kill -9 then start again on the same port with no data (no persistence)."""
    kill9(server)
    return start_redis(server.dir, port=server.port)


def holding(ctl: Controller, token: str, n: int) -> bool:
    """Every live process is paused under ``token`` and together they hold ``n``."""
    try:
        procs = ctl.status().processes
    except IntermissionError:  # Redis still coming back
        return False
    return bool(procs) and all(i.paused and i.acked_token == token for i in procs) and \
        sum(i.held for i in procs) == n


def bodies(futures: list[Any], timeout: float = 30.0) -> list[dict[str, Any]]:
    results = [f.result(timeout=timeout) for f in futures]
    assert [r.status_code for r, _ in results] == [200] * len(results), \
        [r.text for r, _ in results]
    return [r.json() for r, _ in results]


def test_restart_during_renewed_pause_holds_reasserts_and_resumes(
    servers: Callable[..., AppServer], fresh_redis: RedisServer, client: Client
) -> None:
    srv = servers("wsgi", fresh_redis.url, worker_class="gthread", env={"IM_MAX_HOLD": "60"})
    ctl = Controller(fresh_redis.url, srv.scope)
    assert wait_processes(ctl, 1)
    pause = ctl.pause("redis restarts", ttl=8)  # renewed (and checked) every 1 s
    back: RedisServer | None = None
    try:
        assert pause.wait_drained(5).drained
        futures = [client.fire(f"{srv.base}/?tag=before-{i}") for i in range(3)]
        assert wait_for(lambda: holding(ctl, pause.token, 3), 10.0)
        back = restart_empty(fresh_redis)
        futures += [client.fire(f"{srv.base}/?tag=after-{i}") for i in range(2)]
        # the app is back on the empty Redis (its heartbeat is) and still holds all five
        assert wait_for(lambda: holding(ctl, pause.token, 5), 20.0), ctl.status()
        time.sleep(TWO_POLLS)
        assert not any(f.done() for f in futures), "requests were released inside the pause"
        assert wait_for(lambda: bool(pause.reasserted), 10.0)
        state = ctl.read()
        assert state.lease is not None and state.lease.token == pause.token
        assert pause.lost is None
        assert not any(f.done() for f in futures)
        outcome = pause.resume({"primary": "db2"})
        assert outcome is ResumeOutcome.RESUMED
        said = pause.describe(outcome)
        assert re.fullmatch(r"the pause key was lost \(Redis restarted\?\) and re-asserted "
                            r"\d+ time\(s\); resumed", said), said
        # released by the resume (its payload reached on_resume first), not by expiry
        assert all(b["payload"] == {"primary": "db2"} for b in bodies(futures))
    finally:
        pause.stop_renewing()
        if back is not None:
            back.stop()
    assert "Traceback" not in srv.log_text()


def test_restart_during_unrenewed_pause_resume_ends_it_everywhere(
    servers: Callable[..., AppServer], fresh_redis: RedisServer, client: Client
) -> None:
    srv = servers("asgi", fresh_redis.url, env={"IM_MAX_HOLD": "60"})
    ctl = Controller(fresh_redis.url, srv.scope)
    assert wait_processes(ctl, 1)
    pause = ctl.pause("nobody re-asserts", ttl=40, auto_renew=False)
    back: RedisServer | None = None
    try:
        assert pause.wait_drained(5).drained
        futures = [client.fire(f"{srv.base}/?tag={i}") for i in range(3)]
        assert wait_for(lambda: holding(ctl, pause.token, 3), 10.0)
        back = restart_empty(fresh_redis)
        assert wait_for(lambda: holding(ctl, pause.token, 3), 20.0), ctl.status()
        time.sleep(TWO_POLLS)
        assert not any(f.done() for f in futures), "requests were released inside the pause"
        assert ctl.read().lease is None  # nobody re-created the key
        outcome = pause.resume({"primary": "db2"})
        assert outcome is ResumeOutcome.RESUMED_AFTER_LOSS
        said = pause.describe(outcome)
        assert "the pause key was lost (Redis restarted?)" in said and "resumed anyway" in said
        assert all(b["payload"] == {"primary": "db2"} for b in bodies(futures))
        last = ctl.read().last_resume
        assert last is not None and last.token == pause.token
        assert pause.resume() is ResumeOutcome.ALREADY_RESUMED
    finally:
        if back is not None:
            back.stop()
    assert "is gone from Redis" in srv.log_text()  # the app said why it keeps holding
    assert "Traceback" not in srv.log_text()


def test_cli_resume_after_restart_releases_and_says_the_key_was_lost(
    fresh_redis: RedisServer,
) -> None:
    scope = new_scope()
    app = IntermissionMiddleware(lambda e, s: (s("200 OK", []), [b"ok"])[1],
                                 redis_url=fresh_redis.url, scope=scope, max_hold=60)
    app.start()
    ctl = Controller(fresh_redis.url, scope)
    back: RedisServer | None = None
    answers: list[list[bytes]] = []
    try:
        assert wait_processes(ctl, 1)
        out = CliRunner().invoke(cli, ["--redis", fresh_redis.url, "pause", "--scope", scope,
                                       "--ttl", "40", "--wait-drain", "5"])
        assert out.exit_code == 0, out.output
        token = re.search(r"token ([0-9a-f]{24})", out.output).group(1)  # type: ignore[union-attr]
        held = threading.Thread(target=lambda: answers.append(
            list(app({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *a: None))))
        held.start()
        assert wait_for(lambda: app.gate.held == 1, 5.0)
        back = restart_empty(fresh_redis)
        assert wait_for(lambda: holding(ctl, token, 1), 20.0), ctl.status()
        time.sleep(TWO_POLLS)
        assert app.gate.paused and app.gate.held == 1 and not answers
        status = CliRunner().invoke(cli, ["--redis", back.url, "status", "--scope", scope])
        assert "not paused" in status.output and f"--token {token}" in status.output
        out = CliRunner().invoke(cli, ["--redis", back.url, "resume", "--scope", scope])
        assert out.exit_code == 0, out.output
        assert out.output.startswith(f"resumed scope {scope!r}: the pause key was lost "
                                     "(Redis restarted?)"), out.output
        held.join(10)
        assert answers == [[b"ok"]] and not app.gate.paused
    finally:
        app.stop()
        if back is not None:
            back.stop()


def test_redis_frozen_then_continued_keeps_holding_until_resume(
    servers: Callable[..., AppServer], fresh_redis: RedisServer, client: Client
) -> None:
    srv = servers("wsgi", fresh_redis.url, worker_class="gthread", env={"IM_MAX_HOLD": "60"})
    ctl = Controller(fresh_redis.url, srv.scope)
    assert wait_processes(ctl, 1)
    pause = ctl.pause("redis freezes", ttl=12)
    try:
        assert pause.wait_drained(5).drained
        futures = [client.fire(f"{srv.base}/?tag={i}") for i in range(3)]
        assert wait_for(lambda: holding(ctl, pause.token, 3), 10.0)
        os.kill(fresh_redis.pid, signal.SIGSTOP)
        try:
            time.sleep(3.0)  # every Redis call of app and controller times out meanwhile
            assert not any(f.done() for f in futures)
        finally:
            os.kill(fresh_redis.pid, signal.SIGCONT)
        assert wait_for(lambda: holding(ctl, pause.token, 3), 20.0), ctl.status()
        time.sleep(TWO_POLLS)
        assert not any(f.done() for f in futures), "requests were released inside the pause"
        assert pause.resume({"primary": "db2"}) is ResumeOutcome.RESUMED
        assert all(b["payload"] == {"primary": "db2"} for b in bodies(futures))
        assert pause.reasserted == []  # the key survived: nothing to re-assert
    finally:
        pause.stop_renewing()
    assert "Traceback" not in srv.log_text()


def test_redis_gone_for_good_releases_at_lease_expiry_not_before(
    servers: Callable[..., AppServer], fresh_redis: RedisServer, client: Client
) -> None:
    srv = servers("asgi", fresh_redis.url, env={"IM_MAX_HOLD": "60"})
    ctl = Controller(fresh_redis.url, srv.scope)
    assert wait_processes(ctl, 1)
    pause = ctl.pause("redis dies", ttl=3)
    try:
        assert pause.wait_drained(5).drained
        futures = [client.fire(f"{srv.base}/?tag={i}") for i in range(4)]
        assert wait_for(lambda: holding(ctl, pause.token, 4), 10.0)
        kill9(fresh_redis)
        results = [f.result(timeout=40) for f in futures]
        assert [r.status_code for r, _ in results] == [200] * 4  # released, not max_hold's 503
        # not before the lease's end: the last successful renewal's send time + ttl, on
        # the same monotonic clock the app uses (20 ms for Redis's ms rounding and its
        # wall clock counting the TTL)
        assert min(t for _, t in results) >= pause.valid_until - 0.02
        assert all(r.json()["payload"] is None for r, _ in results)  # by expiry, no resume
        assert pause.reasserted == []
        with pytest.raises(RedisUnavailableError):
            pause.resume()
    finally:
        pause.stop_renewing()
    assert "reached its expiry" in srv.log_text()
    assert "Traceback" not in srv.log_text()
