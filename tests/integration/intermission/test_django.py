"""Django behind the middleware, WSGI (gunicorn) and ASGI (uvicorn): held, then released."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from intermission import Controller, ResumeOutcome
from roleswap.lab.redis_server import RedisServer
from tests.integration.intermission.conftest import AppServer, Client, wait_for, wait_processes

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("kind,app", [("wsgi", "django_app:application"),
                                      ("asgi", "django_app:asgi_application")])
def test_django_requests_are_held_then_released(servers: Callable[..., AppServer],
                                                redis_server: RedisServer, client: Client,
                                                kind: str, app: str) -> None:
    server = servers(kind, redis_server.url, app=app)
    ctl = Controller(redis_server.url, server.scope)
    server.get("/")  # first request starts the agent in the worker
    assert wait_processes(ctl, 1)
    with ctl.pause("django", ttl=10) as pause:
        assert pause.wait_drained(10).drained
        assert server.get("/health").status_code == 200  # exempt while paused
        futures = [client.fire(f"{server.base}/?tag={i}") for i in range(3)]
        time.sleep(0.3)
        assert not any(f.done() for f in futures), "Django requests must be held"
        assert wait_for(lambda: sum(p.held for p in ctl.status().processes) == 3, 10.0)
        assert pause.resume({"primary": "db2"}) is ResumeOutcome.RESUMED
    results = [f.result(timeout=20) for f in futures]
    assert [r.status_code for r, _ in results] == [200, 200, 200]
    assert all(r.json()["payload"] == {"primary": "db2"} for r, _ in results)
