"""intermission: hold web requests (not fail them) while the database changes hands.

* :class:`intermission.wsgi.IntermissionMiddleware` / :class:`intermission.asgi.IntermissionMiddleware`
  hold requests in every app process while a pause is active for their scope.
* :class:`intermission.controller.Controller` starts, renews, drains and ends pauses.
* :mod:`intermission.protocol` owns every Redis key and message format.

This package never imports roleswap.
"""

from intermission.agent import start_all
from intermission.controller import Controller, DrainReport, PauseHandle, Status
from intermission.errors import (
    IntermissionError,
    LeaseLostError,
    PauseConflictError,
    ProtocolError,
    RedisUnavailableError,
)
from intermission.handle import Reassertion, describe_resume
from intermission.store import ResumeOutcome

__all__ = [
    "Controller",
    "DrainReport",
    "IntermissionError",
    "LeaseLostError",
    "PauseConflictError",
    "PauseHandle",
    "ProtocolError",
    "Reassertion",
    "RedisUnavailableError",
    "ResumeOutcome",
    "Status",
    "describe_resume",
    "start_all",
]
