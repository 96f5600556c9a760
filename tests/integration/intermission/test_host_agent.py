"""Host mode: one `intermission host-agent` acknowledges pauses for every gunicorn worker of
the host (real agent process, real gunicorn workers, real Redis)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intermission import Controller, ResumeOutcome
from intermission import hostshm as hs
from roleswap.lab.redis_server import RedisServer
from tests.integration.intermission.conftest import (
    AppServer,
    Client,
    new_scope,
    start_server,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)
INTERMISSION = str(Path(sys.executable).parent / "intermission")


class HostAgent:
    def __init__(self, redis_url: str, scope: str, directory: Path, log: Path) -> None:
        self.redis_url, self.scope, self.dir, self.log = redis_url, scope, directory, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [INTERMISSION, "--redis", self.redis_url, "host-agent", "--scope", self.scope,
                 "--dir", str(self.dir)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        page = hs.page_path(self.dir, self.scope)
        assert wait_for(lambda: page.exists() and _age(self.dir, self.scope) < 1.0, 10.0), \
            self.log.read_text()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)


def _age(directory: Path, scope: str) -> float:
    page = hs.Page.attach(directory, scope)
    try:
        return page.agent_age()
    finally:
        page.close()


@pytest.fixture(params=["wsgi"])
def host(request: pytest.FixtureRequest, tmp_path: Path,
         redis_server: RedisServer) -> Iterator[tuple[HostAgent, AppServer]]:
    """A host agent and 4 app workers attached to it: gunicorn (wsgi), uvicorn (asgi)."""
    scope = new_scope()
    agent = HostAgent(redis_server.url, scope, tmp_path / "ha", tmp_path / "agent.log")
    agent.start()
    server = start_server(tmp_path, request.param, redis_server.url, scope=scope, workers=4,
                          env={"INTERMISSION_HOST_AGENT": str(agent.dir), "IM_MAX_HOLD": "8"})
    try:
        yield agent, server
    finally:
        server.stop()
        agent.kill(signal.SIGTERM)


def _host_entry(ctl: Controller) -> list[tuple[str, int, float]]:
    return [(p.kind, p.in_flight, p.metrics.get("processes", -1)) for p in ctl.status().processes]


@pytest.mark.parametrize("host", ["wsgi", "asgi"], indirect=True)
def test_one_agent_acks_for_four_workers_and_they_hold_and_release(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, client: Client) -> None:
    agent, server = host
    ctl = Controller(redis_server.url, server.scope)
    # the 4 workers attached to the agent: one process in status, of kind host
    assert wait_for(lambda: _host_entry(ctl) == [("host", 0, 4.0)], 10.0), _host_entry(ctl)
    with ctl.pause("test", ttl=10) as pause:
        report = pause.wait_drained(10)
        assert report.drained, str(report)
        assert [p.kind for p in report.processes] == ["host"]
        futures = [client.fire(f"{server.base}/?tag={i}") for i in range(12)]
        assert wait_for(lambda: ctl.status().processes[0].held == 12, 10.0), _host_entry(ctl)
        assert not any(f.done() for f in futures), "requests must be held, not answered"
        resumed_at = time.monotonic()
        assert pause.resume({"primary": "db2"}) is ResumeOutcome.RESUMED
    results = [f.result(timeout=20) for f in futures]
    assert [r.status_code for r, _ in results] == [200] * 12
    assert min(t for _, t in results) >= resumed_at  # none answered before the resume
    bodies = [r.json() for r, _ in results]
    assert all(b["payload"] == {"primary": "db2"} for b in bodies)  # on_resume ran first
    assert len({b["pid"] for b in bodies}) > 1  # several workers held and released
    assert server.get("/").status_code == 200  # and the next request passes at once
    assert agent.proc is not None and agent.proc.poll() is None



def _slow_request_in_flight(ctl: Controller, client: Client, server: AppServer,
                            seconds: float) -> Any:
    """Once the 4 workers are attached: a request of ``seconds`` running, counted by the
    agent in its heartbeat.  Returns the client's future for it."""
    assert wait_for(lambda: _host_entry(ctl) == [("host", 0, 4.0)], 10.0), _host_entry(ctl)
    slow = client.fire(f"{server.base}/slow?s={seconds}")
    assert wait_for(lambda: ctl.status().processes[0].in_flight == 1, 10.0)
    return slow

def test_the_drain_waits_for_requests_in_flight_in_any_worker(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, client: Client) -> None:
    _, server = host
    ctl = Controller(redis_server.url, server.scope)
    slow = _slow_request_in_flight(ctl, client, server, 1.5)
    with ctl.pause("test", ttl=10) as pause:
        early = pause.wait_drained(0.3)
        assert not early.drained
        assert "1 request(s) still in flight" in str(early)
        late = pause.wait_drained(10)
        assert late.drained, str(late)
        assert late.in_flight_at_ack == 1  # counted in the agent's acknowledgement
        assert slow.done() and slow.result()[0].status_code == 200  # drained = it finished



def _kill_agent_and_see_workers_register(agent: HostAgent, ctl: Controller) -> None:
    """The 4 workers attached to ``agent``; kill -9 it; after STALE_AGENT seconds without
    a beat each worker registers itself (its own heartbeat, kind wsgi)."""
    assert wait_for(lambda: _host_entry(ctl) == [("host", 0, 4.0)], 10.0), _host_entry(ctl)
    agent.kill()
    assert wait_for(lambda: sorted(p.kind for p in ctl.status().processes) == ["wsgi"] * 4,
                    hs.STALE_AGENT + 10.0), _host_entry(ctl)

def test_workers_talk_to_redis_themselves_when_the_agent_dies(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, client: Client) -> None:
    agent, server = host
    ctl = Controller(redis_server.url, server.scope)
    _kill_agent_and_see_workers_register(agent, ctl)
    with ctl.pause("test", ttl=10) as pause:
        assert pause.wait_drained(10).drained
        held = client.fire(f"{server.base}/?tag=x")
        time.sleep(0.3)
        assert not held.done()
        pause.resume()
    assert held.result(timeout=20)[0].status_code == 200
    assert "stopped beating" in server.log_text()


def test_requests_held_when_the_agent_is_killed_are_released_by_the_resume(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, client: Client) -> None:
    """kill -9 of the agent mid-pause: the workers keep holding (the pause is still on),
    take over with their own Redis agents, and release on the resume of that same token."""
    agent, server = host
    ctl = Controller(redis_server.url, server.scope)
    assert wait_for(lambda: _host_entry(ctl) == [("host", 0, 4.0)], 10.0), _host_entry(ctl)
    with ctl.pause("test", ttl=20) as pause:
        assert pause.wait_drained(10).drained
        futures = [client.fire(f"{server.base}/?tag={i}") for i in range(8)]
        assert wait_for(lambda: ctl.status().processes[0].held == 8, 10.0), _host_entry(ctl)
        agent.kill()
        # the workers notice (STALE_AGENT s) and register themselves, still holding
        assert wait_for(lambda: sorted(p.kind for p in ctl.status().processes) == ["wsgi"] * 4,
                        hs.STALE_AGENT + 10.0), _host_entry(ctl)
        assert sum(p.held for p in ctl.status().processes) == 8
        assert not any(f.done() for f in futures)
        resumed_at = time.monotonic()
        assert pause.resume({"primary": "db2"}) is ResumeOutcome.RESUMED
    results = [f.result(timeout=20) for f in futures]
    assert [r.status_code for r, _ in results] == [200] * 8
    assert min(t for _, t in results) >= resumed_at
    assert all(r.json()["payload"] == {"primary": "db2"} for r, _ in results)


@pytest.mark.parametrize("host", ["wsgi", "asgi"], indirect=True)
def test_workers_that_held_nothing_run_on_resume_before_their_next_request(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, client: Client) -> None:
    """No request during the pause: no worker woke for it.  Each still runs on_resume with
    the payload (say, the new primary) before it serves its first request after it."""
    _, server = host
    ctl = Controller(redis_server.url, server.scope)
    assert wait_for(lambda: _host_entry(ctl) == [("host", 0, 4.0)], 10.0), _host_entry(ctl)
    for n in (1, 2):
        with ctl.pause("test", ttl=10) as pause:
            assert pause.wait_drained(10).drained
            pause.resume({"primary": f"db{n}"})
        bodies = [f.result(timeout=20)[0].json()
                  for f in [client.fire(f"{server.base}/?tag={i}") for i in range(40)]]
        assert {b["payload"]["primary"] for b in bodies} == {f"db{n}"}, bodies
        assert len({b["pid"] for b in bodies}) > 1


def test_status_names_the_host_agent_and_a_second_agent_is_refused(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from intermission.cli import cli

    agent, server = host
    ctl = Controller(redis_server.url, server.scope)
    assert wait_for(lambda: _host_entry(ctl) == [("host", 0, 4.0)], 10.0), _host_entry(ctl)
    out = CliRunner().invoke(cli, ["--redis", redis_server.url, "status", "--scope", server.scope])
    assert out.exit_code == 0, out.output
    assert "processes: 1 live (1 host agent(s) carrying 4 app process(es);" in out.output
    assert re.search(r"\n  \S+ +host +0 +0 ", out.output), out.output
    second = subprocess.run([INTERMISSION, "--redis", redis_server.url, "host-agent", "--scope",
                             server.scope, "--dir", str(agent.dir)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert second.returncode == 1
    assert agent.proc is not None
    assert f"another host agent (pid {agent.proc.pid}) runs for scope" in second.stderr
    assert "remedy:" in second.stderr
    assert _age(agent.dir, server.scope) < 1.0  # the first one still beats, undisturbed
    assert server.get("/").status_code == 200


def test_killing_the_agent_mid_drain_never_reports_the_host_drained_early(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, client: Client) -> None:
    """kill -9 of the agent while a request runs: its Redis heartbeat expires 2.5-3 s later.
    The workers must have written their own (carrying that request) before it does, so
    the drain waits for the request instead of seeing the host's requests vanish."""
    agent, server = host
    ctl = Controller(redis_server.url, server.scope)
    slow = _slow_request_in_flight(ctl, client, server, 5)
    with ctl.pause("test", ttl=20) as pause:
        assert not pause.wait_drained(0.3).drained
        agent.kill()
        report = pause.wait_drained(15)
        finished = slow.done()
        assert report.drained, str(report)
        assert finished, f"drained while the slow request still ran: {report}"
        assert sorted(p.kind for p in report.processes) == ["wsgi"] * 4
    assert slow.result()[0].status_code == 200


def test_workers_attach_again_when_the_agent_comes_back(
        host: tuple[HostAgent, AppServer], redis_server: RedisServer, client: Client) -> None:
    from intermission import hostlink

    agent, server = host
    ctl = Controller(redis_server.url, server.scope)
    _kill_agent_and_see_workers_register(agent, ctl)
    agent.start()  # a supervisor restarts it
    # within REATTACH_EVERY the workers hand over to it, and their own heartbeats go
    assert wait_for(lambda: _host_entry(ctl) == [("host", 0, 4.0)],
                    hostlink.REATTACH_EVERY + 10.0), _host_entry(ctl)
    with ctl.pause("test", ttl=10) as pause:
        assert pause.wait_drained(10).drained
        held = client.fire(f"{server.base}/?tag=x")
        assert wait_for(lambda: ctl.status().processes[0].held == 1, 10.0), _host_entry(ctl)
        pause.resume({"primary": "db9"})
    assert held.result(timeout=20)[0].json()["payload"] == {"primary": "db9"}
    assert "attached to the host agent of scope" in server.log_text()
