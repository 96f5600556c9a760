"""A stand-in for :class:`roleswap.swap.context.SwapContext` in unit tests of steps and
checks: every server has a dialect and scripted answers, every statement is logged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roleswap.mysql.dialect import Dialect, Stmt
from roleswap.swap.context import SwapOptions

# (server name, SQL) -> rows, or a function of the parameters returning rows
Answer = list[dict[str, Any]] | Callable[[tuple[Any, ...]], list[dict[str, Any]]]


@dataclass
class FakeCtx:
    dialects: dict[str, Dialect]
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    opts: SwapOptions = field(default_factory=SwapOptions)
    source: str = "db1"
    target: str = "db2"
    log: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    switch: Any = None
    pause_acks: Any = None
    pause_controller: Any = None
    redis: Any = None

    def dialect(self, name: str) -> Dialect:
        return self.dialects[name]

    def run(self, name: str, stmts: list[Stmt]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for sql, params in stmts:
            self.log.append((name, sql, params))
            answer = self.answers.get((name, sql), [])
            rows = answer(params) if callable(answer) else answer
        return rows

    def query(self, name: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.run(name, [(sql, params)])

    def remember(self, **values: Any) -> None:
        self.state.update(values)

    def remember_with_end(self, **values: Any) -> None:
        self.state.update(values)

    def statements(self, name: str) -> list[str]:
        return [sql for n, sql, _ in self.log if n == name]
