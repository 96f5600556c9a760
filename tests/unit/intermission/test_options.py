"""Middleware option validation: every bad value is a ValueError with a clear message."""

from __future__ import annotations

import re
from typing import Any

import pytest

from intermission.asgi import IntermissionMiddleware as ASGIMiddleware
from intermission.wsgi import IntermissionMiddleware as WSGIMiddleware

URL = "redis://127.0.0.1:6379/0"


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    return [b""]


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.mark.parametrize("cls,app", [(WSGIMiddleware, wsgi_app), (ASGIMiddleware, asgi_app)])
@pytest.mark.parametrize("kwargs,message", [
    ({"max_hold": 0}, "max_hold must be in"),
    ({"max_hold": -1}, "max_hold must be in"),
    ({"max_hold": "10"}, "max_hold must be a number"),
    ({"max_hold": True}, "max_hold must be a number"),
    ({"max_hold": 99999}, "max_hold must be in"),
    ({"scope": "no spaces"}, "scope must be"),
    ({"release_rate": 0}, "release_rate must be in"),
    ({"release_concurrency": 0}, "release_concurrency must be an int >= 1"),
    ({"release_concurrency": 2.5}, "release_concurrency must be an int >= 1"),
    ({"exempt_paths": "/health"}, "not a single value"),
    ({"exempt_paths": ["health"]}, "must be prefixes starting with '/'"),
    ({"exempt_methods": "GET"}, "exempt_methods must be a list"),
    ({"exempt_methods": ["G E T"]}, "HTTP method names"),
    ({"exempt": "yes"}, "exempt must be callable"),
    ({"on_resume": 3}, "on_resume must be callable"),
    ({"hook_timeout": 0}, "hook_timeout must be in"),
    ({"poll_interval": 0.001}, "poll_interval must be in"),
    ({"startup_wait": -1}, "startup_wait must be in"),
    ({"redis_url": "http://x"}, "redis_url must be a redis://"),
    ({"redis_url": "http://u:secret@x"}, re.escape("'http://u:***@x'")),
    ({"redis": object(), "redis_url": None}, "redis must be a redis.Redis client"),
])
def test_bad_values(cls: Any, app: Any, kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"redis_url": URL, "scope": "web", **kwargs}
    with pytest.raises(ValueError, match=message):
        cls(app, **options)


def test_url_or_client_not_both(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    with pytest.raises(ValueError, match="not both"):
        WSGIMiddleware(wsgi_app, scope="web", redis_url=URL, redis=redis.Redis())
    monkeypatch.delenv("INTERMISSION_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="INTERMISSION_REDIS_URL"):
        WSGIMiddleware(wsgi_app, scope="web")
    monkeypatch.setenv("INTERMISSION_REDIS_URL", URL)
    assert WSGIMiddleware(wsgi_app, scope="web").agent.redis_url == URL


def test_not_an_app_and_bad_websocket_flag() -> None:
    with pytest.raises(ValueError, match="WSGI callable"):
        WSGIMiddleware(None, redis_url=URL, scope="web")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hold_websockets"):
        ASGIMiddleware(asgi_app, redis_url=URL, scope="web",
                       hold_websockets="yes")  # type: ignore[arg-type]


def test_good_values_are_accepted() -> None:
    mw = WSGIMiddleware(wsgi_app, redis_url=URL, scope="web", max_hold=2.5,
                        exempt_paths=("/health", re.compile(r"^/static/")),
                        exempt_methods=["get", "head"], release_rate=500,
                        release_concurrency=8)
    check = mw._exempt
    assert check is not None
    assert check("/health/db", "POST", {}) and check("/static/x.css", "POST", {})
    assert check("/orders", "GET", {}) and not check("/orders", "POST", {})
    assert mw.gate.max_hold == 2.5 and mw.gate.release_rate == 500.0
