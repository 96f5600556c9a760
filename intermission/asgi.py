"""ASGI middleware (Starlette/FastAPI, Django ASGI, any ASGI 3 app).

    from intermission.asgi import IntermissionMiddleware
    app = IntermissionMiddleware(app, redis_url=..., scope="web")
    # Starlette/FastAPI: app.add_middleware(IntermissionMiddleware, redis_url=..., scope="web")

Holds are asyncio futures resolved from the watcher thread with
``loop.call_soon_threadsafe``: a held request blocks neither the event loop nor a
thread.  ``lifespan`` passes through untouched (and starts the agent in the worker);
websockets pass through unless ``hold_websockets=True`` (then a websocket held past
``max_hold`` is closed with code 1013, "try again later").
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from intermission.options import UNAVAILABLE_BODY, build
from intermission.state import RELEASED, Gate

if TYPE_CHECKING:
    import re

    import redis

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class IntermissionMiddleware:
    """Hold (not fail) ASGI requests while the scope is paused.

    Same options as :class:`intermission.wsgi.IntermissionMiddleware` (``exempt``
    receives the ASGI scope; hooks may be ``async def``: they then run on the app's
    event loop), plus ``hold_websockets``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        scope: str,
        redis_url: str | None = None,
        redis: redis.Redis | None = None,
        max_hold: float = 10.0,
        exempt_paths: Iterable[str | re.Pattern[str]] = (),
        exempt_methods: Iterable[str] = (),
        exempt: Callable[[Scope], bool] | None = None,
        on_pause: Callable[[], object] | None = None,
        on_resume: Callable[[dict[str, Any] | None], object] | None = None,
        release_rate: float | None = None,
        release_concurrency: int | None = None,
        hold_websockets: bool = False,
        hook_timeout: float = 5.0,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 1.0,
        connect_timeout: float = 0.5,
        startup_wait: float = 0.2,
        host_agent: str | None = None,
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI callable; got {app!r}")
        if not isinstance(hold_websockets, bool):
            raise ValueError(f"hold_websockets must be True or False; got {hold_websockets!r}")
        self._loop: asyncio.AbstractEventLoop | None = None
        built = build(
            kind="asgi", scope=scope, redis_url=redis_url, redis_client=redis,
            max_hold=max_hold, exempt_paths=exempt_paths, exempt_methods=exempt_methods,
            exempt=exempt, on_pause=on_pause, on_resume=on_resume,
            release_rate=release_rate, release_concurrency=release_concurrency,
            hook_timeout=hook_timeout, poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval, connect_timeout=connect_timeout,
            startup_wait=startup_wait, host_agent=host_agent, hook_wrapper=self._wrap_hook,
        )
        self.app = app
        self.gate: Gate = built.gate
        self.agent = built.agent
        self._exempt = built.exempt
        self._hold_ws = hold_websockets
        self._hook_timeout = float(hook_timeout)

    def _wrap_hook(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Coroutine hooks run on the app's loop (where its DB pool lives)."""
        if not inspect.iscoroutinefunction(hook):
            return hook

        @functools.wraps(hook)
        def run(*args: Any) -> None:
            loop = self._loop
            if loop is None or loop.is_closed():
                asyncio.run(hook(*args))
                return
            asyncio.run_coroutine_threadsafe(hook(*args), loop).result(self._hook_timeout)

        return run

    def start(self) -> None:
        self.agent.start()

    def stop(self) -> None:
        self.agent.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and not (kind == "websocket" and self._hold_ws):
            if kind == "lifespan" and not self.agent.started:
                self._loop = asyncio.get_running_loop()
                self.agent.start()
            await self.app(scope, receive, send)
            return
        if not self.agent.started:
            self._loop = asyncio.get_running_loop()
            self.agent.start()
        if self._exempt is not None and self._exempt(
            scope.get("path", ""), scope.get("method", "GET"), scope
        ):
            await self.app(scope, receive, send)
            return
        gate = self.gate
        with gate.lock:
            passed = gate.open
            if passed:
                gate.in_flight += 1
                if gate.shared is not None:  # host mode: publish the count, read the host's flag
                    passed = gate.shared.admit(gate)
        paced = False
        if not passed:
            while True:
                w = await gate.hold_async()
                if w.state != RELEASED:
                    await self._unavailable(kind, send)
                    return
                if gate.shared is None or gate.recheck(w.paced):
                    break
            paced = w.paced
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave(paced)

    async def _unavailable(self, kind: str, send: Send) -> None:
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1013})
            return
        await send({
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(UNAVAILABLE_BODY)).encode()),
                (b"retry-after", str(self.gate.retry_after()).encode()),
                (b"cache-control", b"no-store"),
            ],
        })
        await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})
