"""Validation of the middleware options shared by the WSGI and ASGI middlewares.

Every bad value raises ``ValueError`` naming the option, what is allowed, and what was
given -- at construction, never on a request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from intermission import protocol as p
from intermission.agent import Agent
from intermission.client import parse as parse_address
from intermission.hostlink import ENV_DIR, HostLink
from intermission.state import Gate

ENV_URL = "INTERMISSION_REDIS_URL"
#: (path, method, raw scope/environ) -> True if the request passes while paused
ExemptCheck = Callable[[str, str, Any], bool]
PathRule = str | re.Pattern[str]


def _number(name: str, value: object, low: float, high: float, *, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number; got {value!r}")
    v = float(value)
    ok = (v > low if low_open else v >= low) and v <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}] seconds; got {value!r}")
    return v


def _paths(value: object) -> tuple[PathRule, ...]:
    if isinstance(value, str | bytes | re.Pattern):
        raise ValueError(
            "exempt_paths must be a list or tuple of path prefixes / compiled patterns, "
            f"not a single value; got {value!r} (write ({value!r},))"
        )
    if not isinstance(value, Iterable):
        raise ValueError(f"exempt_paths must be an iterable; got {value!r}")
    out: list[PathRule] = []
    for rule in value:
        prefix = isinstance(rule, str) and rule.startswith("/")
        pattern = isinstance(rule, re.Pattern) and isinstance(rule.pattern, str)
        if prefix or pattern:
            out.append(rule)
        else:
            raise ValueError(
                f"exempt_paths entries must be prefixes starting with '/' or re.compile(...) "
                f"patterns; got {rule!r}"
            )
    return tuple(out)


def _methods(value: object) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"exempt_methods must be a list of HTTP methods; got {value!r}")
    out = set()
    for m in value:
        if not isinstance(m, str) or not re.fullmatch(r"[A-Za-z]{1,20}", m):
            raise ValueError(f"exempt_methods entries must be HTTP method names; got {m!r}")
        out.add(m.upper())
    return frozenset(out)


def _callable(name: str, value: object) -> Any:
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be callable or None; got {value!r}")
    return value


def make_exempt(
    paths: tuple[PathRule, ...], methods: frozenset[str], predicate: Any
) -> ExemptCheck | None:
    """One function answering "does this request pass while paused?" (None: never)."""
    prefixes = tuple(r for r in paths if isinstance(r, str))
    patterns = tuple(r for r in paths if isinstance(r, re.Pattern))
    if not (prefixes or patterns or methods or predicate):
        return None

    def check(path: str, method: str, raw: Any) -> bool:
        if prefixes and path.startswith(prefixes):
            return True
        if patterns and any(pat.match(path) for pat in patterns):
            return True
        if method in methods:
            return True
        return bool(predicate(raw)) if predicate is not None else False

    return check


@dataclass(frozen=True)
class Built:
    gate: Gate
    agent: Agent | HostLink
    exempt: ExemptCheck | None


def build(
    *,
    kind: str,
    scope: object,
    redis_url: object,
    redis_client: object,
    max_hold: object,
    exempt_paths: object,
    exempt_methods: object,
    exempt: object,
    on_pause: object,
    on_resume: object,
    release_rate: object,
    release_concurrency: object,
    hook_timeout: object,
    poll_interval: object,
    heartbeat_interval: object,
    connect_timeout: object,
    startup_wait: object,
    host_agent: object = None,
    hook_wrapper: Callable[[Any], Any] = lambda f: f,
) -> Built:
    """Validate every option and build the gate + agent (threads not started)."""
    scope_s = p.validate_scope(scope)
    if redis_url is not None and redis_client is not None:
        raise ValueError("pass either redis_url or redis (a client), not both")
    url: str | None = None
    client: redis.Redis | None = None
    if redis_client is not None:
        if not (hasattr(redis_client, "pubsub") and hasattr(redis_client, "register_script")):
            raise ValueError(f"redis must be a redis.Redis client; got {redis_client!r}")
        client = redis_client  # type: ignore[assignment]
    else:
        url = redis_url if redis_url is not None else os.environ.get(ENV_URL)  # type: ignore[assignment]
        try:
            parse_address(url)
        except ValueError as exc:
            raise ValueError(
                f"redis_url {exc} (or set {ENV_URL}, or pass redis=<client>)"
            ) from None
    hold = _number("max_hold", max_hold, 0.0, 3600.0, low_open=True)
    rate = None
    if release_rate is not None:
        rate = _number("release_rate", release_rate, 0.0, 1e6, low_open=True)
    conc = None
    if release_concurrency is not None:
        if isinstance(release_concurrency, bool) or not isinstance(release_concurrency, int) \
                or release_concurrency < 1:
            raise ValueError(
                f"release_concurrency must be an int >= 1 or None; got {release_concurrency!r}"
            )
        conc = release_concurrency
    paths = _paths(exempt_paths)
    methods = _methods(exempt_methods)
    predicate = _callable("exempt", exempt)
    pause_hook = _callable("on_pause", on_pause)
    resume_hook = _callable("on_resume", on_resume)
    gate = Gate(
        scope_s,
        max_hold=hold,
        release_rate=rate,
        release_concurrency=conc,
        on_pause=hook_wrapper(pause_hook) if pause_hook else None,
        on_resume=hook_wrapper(resume_hook) if resume_hook else None,
        hook_timeout=_number("hook_timeout", hook_timeout, 0.0, 600.0, low_open=True),
    )
    host_dir = host_agent if host_agent is not None else os.environ.get(ENV_DIR) or None
    if host_dir is not None and (not isinstance(host_dir, str) or not host_dir.startswith("/")):
        raise ValueError(f"host_agent must be the absolute path of the host agent's directory "
                         f"(intermission host-agent --dir), or None; got {host_dir!r}")
    agent_args = dict(
        scope=scope_s,
        kind=kind,
        redis_url=url,
        redis_client=client,
        poll_interval=_number("poll_interval", poll_interval, 0.05, 60.0, low_open=False),
        heartbeat_interval=_number(
            "heartbeat_interval", heartbeat_interval, 0.1, 60.0, low_open=False
        ),
        connect_timeout=_number("connect_timeout", connect_timeout, 0.0, 30.0, low_open=True),
        startup_wait=_number("startup_wait", startup_wait, 0.0, 10.0, low_open=False),
    )
    agent: Agent | HostLink
    if host_dir is None:
        agent = Agent(gate, **agent_args)  # type: ignore[arg-type]
    else:  # the Redis agent is made only if the host agent is not there (or goes away)
        agent = HostLink(gate, directory=host_dir, scope=scope_s,
                         fallback=lambda: Agent(gate, **agent_args))  # type: ignore[arg-type]
    return Built(gate, agent, make_exempt(paths, methods, predicate))


UNAVAILABLE_BODY = b"Service paused for maintenance; please retry shortly.\n"
