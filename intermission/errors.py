"""Exceptions raised by intermission.  Each carries a remedy an operator can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from intermission.protocol import Lease


class IntermissionError(Exception):
    """Base class.  ``remedy`` tells the operator what to do about it."""

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        return f"{self.message} ({self.remedy})" if self.remedy else self.message


class ProtocolError(IntermissionError):
    """A value read from Redis (or given to us) does not follow the protocol."""


class RedisUnavailableError(IntermissionError):
    """Redis could not be reached (connection refused, timeout, auth failure...)."""


class PauseConflictError(IntermissionError):
    """A pause with a different token is already active for the scope."""

    def __init__(self, message: str, current: Lease | None, remedy: str = "") -> None:
        super().__init__(message, remedy)
        self.current = current


class LeaseLostError(IntermissionError):
    """Our pause lease is gone (expired, resumed, or replaced by another pause)."""
