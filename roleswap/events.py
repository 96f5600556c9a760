"""Typed progress events: what the engine reports while a swap or a recovery runs.

The API hands each event to the caller's ``on_event`` callback as it happens; the CLI
renders them as text, or with ``--events`` as one JSON object per line (NDJSON) for CI
logs.  Every event's :meth:`Event.as_dict` has ``event`` (its kind) and ``at`` (Unix
time) first.  Events carry no secrets: checks, step details and errors are the same
texts the CLI prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from roleswap.swap.check import Check
    from roleswap.swap.flow import PlanLine
    from roleswap.swap.runner import StepResult


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    at: float = field(default_factory=time.time, kw_only=True)

    def payload(self) -> dict[str, Any]:
        return {}

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "at": round(self.at, 3), **self.payload()}


OnEvent = Callable[[Event], None]


@dataclass(frozen=True)
class SwapBegins(Event):
    """Preflight has read the servers: which swap, and how (``mode``: gtid / filepos)."""

    kind: ClassVar[str] = "begin"
    source: str
    target: str
    cluster: str
    switch: str
    pause: bool
    mode: str

    def payload(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "cluster": self.cluster,
                "switch": self.switch, "pause": self.pause, "mode": self.mode}


@dataclass(frozen=True)
class TargetChosen(Event):
    """No target was given: the replica chosen, and why (and why not the others)."""

    kind: ClassVar[str] = "target"
    target: str
    reason: str
    others: tuple[tuple[str, str], ...] = ()  # (name, why it was not chosen)

    def payload(self) -> dict[str, Any]:
        return {"to": self.target, "reason": self.reason,
                "others": [{"name": n, "why_not": w} for n, w in self.others]}


@dataclass(frozen=True)
class CheckDone(Event):
    """One preflight check finished (ok / warn / fail)."""

    kind: ClassVar[str] = "check"
    check: Check

    def payload(self) -> dict[str, Any]:
        return self.check.as_dict()


@dataclass(frozen=True)
class PlanReady(Event):
    """Preflight passed; the steps that will run, in order (``mode``: gtid / filepos)."""

    kind: ClassVar[str] = "plan"
    mode: str
    steps: tuple[PlanLine, ...]

    def payload(self) -> dict[str, Any]:
        return {"mode": self.mode, "steps": [s.as_dict() for s in self.steps]}


@dataclass(frozen=True)
class StepDone(Event):
    """One step applied (done / failed) or undone (undone / undo-failed)."""

    kind: ClassVar[str] = "step"
    step: StepResult

    def payload(self) -> dict[str, Any]:
        return self.step.as_dict()


@dataclass(frozen=True)
class RunbookProgress(Event):
    """A runbook waits for ``server``: what it is still waiting for (sent when it changes)."""

    kind: ClassVar[str] = "wait"
    server: str
    state: str

    def payload(self) -> dict[str, Any]:
        return {"server": self.server, "state": self.state}


@dataclass(frozen=True)
class RunbookStepDone(Event):
    """One runbook step finished (swap-away, run, wait, swap-back; done or failed)."""

    kind: ClassVar[str] = "runbook_step"
    step: StepResult

    def payload(self) -> dict[str, Any]:
        return self.step.as_dict()


@dataclass(frozen=True)
class RunbookPlanned(Event):
    """A runbook's whole plan, before its first step."""

    kind: ClassVar[str] = "runbook"
    runbook: str  # maintain | rolling
    steps: tuple[dict[str, str], ...]

    def payload(self) -> dict[str, Any]:
        return {"runbook": self.runbook, "steps": [dict(s) for s in self.steps]}


@dataclass(frozen=True)
class RecoverDecided(Event):
    """recover read the journal and the servers: what it will do, and why."""

    kind: ClassVar[str] = "decision"
    swap_id: str
    source: str
    target: str
    last_step: str
    action: str  # finish | roll back | manual | abandon | reopen | none
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"swap_id": self.swap_id, "from": self.source, "to": self.target,
                "last_step": self.last_step, "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class Finished(Event):
    """The last event of an operation: its whole outcome, as the CLI's ``--json`` prints it."""

    kind: ClassVar[str] = "result"
    outcome: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return dict(self.outcome)
