"""One exception root for everything roleswap refuses or fails at.

Every error carries a ``remedy`` (what the operator should do next) and an
``exit_code``; the CLI maps them to process exit codes the same way click's
``ClickException.exit_code`` does.  Messages must never contain secrets.
"""

from __future__ import annotations

from typing import Any


class RoleSwapError(Exception):
    """Root of all roleswap errors.  ``remedy`` tells the operator how to fix it."""

    exit_code = 1
    kind = "error"
    # The API attaches what the failed operation produced (a SwapResult, a RecoverReport)
    # so that a caller who catches the error still has every step's outcome.
    result: Any = None

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "message": self.message, "remedy": self.remedy}


class UsageError(RoleSwapError):
    """Bad command line or configuration; nothing was touched."""

    exit_code = 2


class ConfigError(UsageError):
    """The config file is missing, unreadable or invalid."""


class LabError(RoleSwapError):
    """The local lab could not be started, stopped or inspected."""

    exit_code = 1


class MissingBinaryError(LabError):
    """A required program (mariadbd, redis-server, ...) is not installed."""


class ServerError(RoleSwapError):
    """A server could not be reached or answered with an error.

    ``kind`` says which, so callers word it right: ``unreachable`` (no connection:
    refused, timed out, unknown host), ``access_denied`` (the server refused the
    control account's login), ``lost`` (an open connection broke) or ``error`` (the
    server answered with error ``code``).  ``code`` is the MySQL error number, if any.
    """

    def __init__(self, message: str, remedy: str = "", *, kind: str = "error",
                 code: int | None = None) -> None:
        super().__init__(message, remedy)
        self.kind = kind
        self.code = code


class PreflightError(RoleSwapError):
    """Preflight refused the swap; nothing was changed.  ``checks``: every check's outcome
    (``roleswap.swap.check.Check``) when the refusal came from the checks."""

    exit_code = 3

    def __init__(self, message: str, remedy: str = "", checks: tuple[Any, ...] = ()) -> None:
        super().__init__(message, remedy)
        self.checks = checks


class RolledBackError(RoleSwapError):
    """A step failed before the point of no return; every completed step was undone."""

    exit_code = 4


class AfterPointOfNoReturnError(RoleSwapError):
    """A step failed after traffic resumed on the new primary; run `roleswap recover`."""

    exit_code = 5


class RollbackIncompleteError(RoleSwapError):
    """A step failed before the point of no return and undoing it failed too: the
    cluster is part-way (traffic still paused or resumed to the OLD primary); run
    `roleswap recover`, which decides from what the servers say now."""

    exit_code = 6


class ManualInterventionError(RoleSwapError):
    """`roleswap recover` could not choose a safe target state (a server it needs is
    down, or both servers took writes the other lacks).  It changed nothing; the
    remedy lists the manual steps that fit the state it saw."""

    exit_code = 7


class RunbookError(RoleSwapError):
    """A maintenance runbook stopped outside a swap: its command failed, or the server
    did not come back (answering, replicating, caught up) in time.  No swap is left
    half-done; the remedy names the runbook steps that did not run."""

    exit_code = 9


class StepError(RoleSwapError):
    """A single step failed (wrapped by the runner into RolledBack / AfterPointOfNoReturn)."""
