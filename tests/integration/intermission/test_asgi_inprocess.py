"""The ASGI middleware called directly (no server): lifespan, websockets, async hooks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from intermission import Controller
from intermission.asgi import IntermissionMiddleware
from tests.integration.intermission.conftest import new_scope

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sent: list[dict[str, Any]] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls.append(scope["type"])

    async def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)


async def receive() -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {}


async def until(cond: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.005)
    return bool(cond())


def test_lifespan_and_websockets_pass_by_default_hold_by_option(redis_url: str) -> None:
    scope = new_scope()
    ctl = Controller(redis_url, scope)
    rec = Recorder()
    plain = IntermissionMiddleware(rec.app, redis_url=redis_url, scope=scope)
    holding = IntermissionMiddleware(rec.app, redis_url=redis_url, scope=scope, max_hold=0.3,
                                     hold_websockets=True)

    async def main() -> None:
        await plain({"type": "lifespan"}, receive, rec.send)  # starts the agent, passes
        await holding({"type": "lifespan"}, receive, rec.send)
        assert rec.calls == ["lifespan", "lifespan"]
        with ctl.pause("ws", ttl=10) as pause:
            await asyncio.get_running_loop().run_in_executor(None, pause.wait_drained, 2)
            assert await until(lambda: plain.gate.paused and holding.gate.paused)
            await plain({"type": "websocket", "path": "/ws"}, receive, rec.send)
            assert rec.calls[-1] == "websocket"  # passed through while paused
            t0 = time.monotonic()
            await holding({"type": "websocket", "path": "/ws"}, receive, rec.send)
            assert time.monotonic() - t0 >= 0.29
            assert rec.sent[-1] == {"type": "websocket.close", "code": 1013}
            assert rec.calls.count("websocket") == 1

    try:
        asyncio.run(main())
    finally:
        plain.stop()
        holding.stop()


def test_async_on_resume_hook_runs_on_the_app_loop_before_release(redis_url: str) -> None:
    scope = new_scope()
    ctl = Controller(redis_url, scope)
    events: list[Any] = []

    async def on_resume(payload: Any) -> None:
        await asyncio.sleep(0.05)
        events.append(("hook", payload, asyncio.get_running_loop()))

    async def app(s: dict[str, Any], r: Any, send: Any) -> None:
        if s["type"] == "http":
            events.append(("app", None, asyncio.get_running_loop()))

    mw = IntermissionMiddleware(app, redis_url=redis_url, scope=scope, on_resume=on_resume)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await mw({"type": "lifespan"}, receive, Recorder().send)
        pause = await loop.run_in_executor(None, lambda: ctl.pause("h", ttl=10))
        await loop.run_in_executor(None, pause.wait_drained, 2)
        task = asyncio.create_task(mw({"type": "http", "path": "/"}, receive, Recorder().send))
        assert await until(lambda: mw.gate.held == 1)
        await loop.run_in_executor(None, pause.resume, {"k": "v"})
        await asyncio.wait_for(task, 5)
        assert [e[0] for e in events] == ["hook", "app"]
        assert events[0][1] == {"k": "v"} and events[0][2] is loop

    try:
        asyncio.run(main())
    finally:
        mw.stop()
