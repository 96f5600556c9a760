"""WSGI middleware: hold requests while a pause is active for the scope.

    from intermission.wsgi import IntermissionMiddleware
    app.wsgi_app = IntermissionMiddleware(app.wsgi_app, redis_url=..., scope="web")

Not paused, a request costs one uncontended lock round and a counter (no Redis call).
Paused, the request's thread waits on its own event; held requests are released in
arrival order.  Past ``max_hold`` the client gets ``503`` with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from intermission.options import UNAVAILABLE_BODY, build
from intermission.state import RELEASED, Gate

if TYPE_CHECKING:
    import re

    import redis
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class _Closing:
    """Wraps the response iterable: the request counts as in flight until ``close()``
    (streaming responses keep working -- and touching the database -- while iterated)."""

    __slots__ = ("_done", "_leave", "_result")

    def __init__(self, result: Iterable[bytes], leave: Callable[[], None]) -> None:
        self._result = result
        self._leave = leave
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self._leave()


class IntermissionMiddleware:
    """Hold (not fail) WSGI requests while the scope is paused.

    Options (all validated here; bad values raise ``ValueError``):

    ``scope``: which pause applies.  ``redis_url`` (``redis://`` or ``redis+sentinel://``,
    see :mod:`intermission.client`; or env ``INTERMISSION_REDIS_URL``)
    or ``redis`` (an existing ``redis.Redis``; give it socket timeouts).
    ``max_hold``: seconds a request may wait (default 10, keep it under the server's
    worker timeout) before a 503 + ``Retry-After``.  ``exempt_paths``: prefixes
    (``"/health"``) or ``re.compile`` patterns matched against ``PATH_INFO``;
    ``exempt_methods``: e.g. ``("GET", "HEAD")`` to hold only writes; ``exempt``:
    predicate on the WSGI environ.  Exempt requests pass while paused and are not
    counted in flight.  ``on_pause()`` / ``on_resume(payload)``: called once per process,
    ``on_resume`` before held requests are released (drop your DB pool there); each is
    bounded by ``hook_timeout``.  ``release_rate`` (requests/s) and/or
    ``release_concurrency`` pace the release of a backlog.  ``startup_wait``: how long
    the first requests of a process wait for the first Redis answer before failing open.
    ``host_agent``: the directory of this host's ``intermission host-agent`` (or env
    ``INTERMISSION_HOST_AGENT``): the agent then acknowledges pauses for every process of
    the host, which never wake for one (see :mod:`intermission.hostlink`); without a
    running agent the process talks to Redis itself.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        scope: str,
        redis_url: str | None = None,
        redis: redis.Redis | None = None,
        max_hold: float = 10.0,
        exempt_paths: Iterable[str | re.Pattern[str]] = (),
        exempt_methods: Iterable[str] = (),
        exempt: Callable[[WSGIEnvironment], bool] | None = None,
        on_pause: Callable[[], object] | None = None,
        on_resume: Callable[[dict[str, Any] | None], object] | None = None,
        release_rate: float | None = None,
        release_concurrency: int | None = None,
        hook_timeout: float = 5.0,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 1.0,
        connect_timeout: float = 0.5,
        startup_wait: float = 0.2,
        host_agent: str | None = None,
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be a WSGI callable; got {app!r}")
        built = build(
            kind="wsgi", scope=scope, redis_url=redis_url, redis_client=redis,
            max_hold=max_hold, exempt_paths=exempt_paths, exempt_methods=exempt_methods,
            exempt=exempt, on_pause=on_pause, on_resume=on_resume,
            release_rate=release_rate, release_concurrency=release_concurrency,
            hook_timeout=hook_timeout, poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval, connect_timeout=connect_timeout,
            startup_wait=startup_wait, host_agent=host_agent,
        )
        self.app = app
        self.gate: Gate = built.gate
        self.agent = built.agent
        self._exempt = built.exempt

    def start(self) -> None:
        """Start the Redis threads now (otherwise: on the first request)."""
        self.agent.start()

    def stop(self) -> None:
        self.agent.stop()

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if not self.agent.started:
            self.agent.start()
        if self._exempt is not None and self._exempt(
            environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET"), environ
        ):
            return self.app(environ, start_response)
        gate = self.gate
        with gate.lock:
            passed = gate.open
            if passed:
                gate.in_flight += 1
                if gate.shared is not None:  # host mode: publish the count, read the host's flag
                    passed = gate.shared.admit(gate)
        leave: Callable[[], None] = gate.leave
        if not passed:
            while True:
                w = gate.hold_thread()
                if w.state != RELEASED:
                    return self._unavailable(start_response)
                if gate.shared is None or gate.recheck(w.paced):
                    break
            if w.paced:
                leave = gate.leave_paced
        try:
            result = self.app(environ, start_response)
        except BaseException:
            leave()
            raise
        if type(result) is list:  # fully computed already: no need to wrap
            leave()
            return result
        return _Closing(result, leave)

    def _unavailable(self, start_response: StartResponse) -> list[bytes]:
        start_response("503 Service Unavailable", [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(UNAVAILABLE_BODY))),
            ("Retry-After", str(self.gate.retry_after())),
            ("Cache-Control", "no-store"),
        ])
        return [UNAVAILABLE_BODY]
