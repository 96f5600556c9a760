"""Shared bits of the test apps: configuration from env vars, per-process counters."""

from __future__ import annotations

import os
import threading
from typing import Any

REDIS_URL = os.environ.get("IM_REDIS_URL", "redis://127.0.0.1:1/0")
SCOPE = os.environ.get("IM_SCOPE", "test")
MAX_HOLD = float(os.environ.get("IM_MAX_HOLD", "10"))
EXEMPT = tuple(x for x in os.environ.get("IM_EXEMPT", "/health").split(",") if x)
RELEASE_RATE = float(os.environ["IM_RELEASE_RATE"]) if os.environ.get("IM_RELEASE_RATE") else None

_lock = threading.Lock()
_seq = 0
# what on_resume received, and when (so a request can prove it ran after the hook)
resume_state: dict[str, Any] = {"payload": None, "calls": 0}


def next_seq() -> int:
    """Admission order of requests inside this process."""
    global _seq
    with _lock:
        _seq += 1
        return _seq


def on_resume(payload: dict[str, Any] | None) -> None:
    resume_state["payload"] = payload
    resume_state["calls"] += 1


def options() -> dict[str, Any]:
    return {
        "redis_url": REDIS_URL,
        "scope": SCOPE,
        "max_hold": MAX_HOLD,
        "exempt_paths": EXEMPT,
        "on_resume": on_resume,
        "release_rate": RELEASE_RATE,
    }
