"""What the WSGI and ASGI demo apps share: the process state, the hooks, and how a
request learns that it was held.

An outer wrapper stamps each request's arrival (monotonic clock) *before* the
intermission middleware sees it.  The ``on_resume`` hook records when this process
resumed.  A request that arrived before a resume and whose handler runs after it was
held by the pause: the app says so in the ``X-Demo-Held-Ms`` response header (the
time it spent held).  A handler that runs while this process is paused, for a
request that arrived after the pause began, would be a middleware bug: it is flagged
with ``X-Demo-Served-Paused: 1``.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from roleswap.demo.db import Database, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ARRIVAL_KEY = "roleswap.demo.arrival"
EXEMPT_PATHS = ("/health",)


class HoldTracker:
    """When this process paused and resumed (monotonic), to classify requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.paused_at: float | None = None
        self.resumes: list[float] = []  # ascending

    def on_pause(self) -> None:
        with self._lock:
            self.paused_at = time.monotonic()

    def on_resume(self) -> None:
        with self._lock:
            self.resumes.append(time.monotonic())
            self.paused_at = None

    def classify(self, arrival: float | None, start: float) -> dict[str, str]:
        """Response headers for a request that arrived at ``arrival`` and started at ``start``."""
        if arrival is None:
            return {}
        headers: dict[str, str] = {}
        with self._lock:
            i = bisect.bisect_right(self.resumes, arrival)
            held = i < len(self.resumes) and self.resumes[i] <= start
            paused_at = self.paused_at
        if held:
            headers["X-Demo-Held-Ms"] = f"{(start - arrival) * 1000:.3f}"
        if paused_at is not None and arrival >= paused_at:
            headers["X-Demo-Served-Paused"] = "1"
        return headers


class DemoState:
    """One per process: the database, the hold tracker and the middleware options."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.db = Database.from_settings(self.settings)
        self.db.ensure_schema()
        self.tracker = HoldTracker()
        self.pid = os.getpid()

    def on_resume(self, payload: dict[str, Any] | None) -> None:
        self.tracker.on_resume()
        self.db.on_resume(payload)

    def middleware_options(self) -> dict[str, Any]:
        cfg = self.db.config
        if cfg.redis_url is None:
            raise RuntimeError(f"{cfg.source} has no [redis] url: intermission needs it")
        return {
            "scope": cfg.scope,
            "redis_url": cfg.redis_url.reveal(),
            "max_hold": self.settings.max_hold,
            "exempt_paths": EXEMPT_PATHS,
            "on_pause": self.tracker.on_pause,
            "on_resume": self.on_resume,
        }

    def health(self) -> dict[str, Any]:
        return {"ok": True, "pid": self.pid, "primary": self.db.primary.name,
                "switches": len(self.db.switches)}


def parse_key(value: object) -> str | None:
    """A client-supplied row key: 1-32 letters/digits, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not (0 < len(value) <= 32) or not value.isalnum():
        raise ValueError("k must be 1-32 letters/digits")
    return value


class StampWSGI:
    """Outermost WSGI layer: note when the request arrived (before any hold)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[ARRIVAL_KEY] = time.monotonic()
        return self.app(environ, start_response)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class StampASGI:
    """Outermost ASGI layer: note when the request arrived (before any hold)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[ARRIVAL_KEY] = time.monotonic()
        await self.app(scope, receive, send)
