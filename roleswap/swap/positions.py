"""Binlog positions: how to read one and wait for a replica to apply it.

GTID and file/position topologies differ only here, so each is a small table entry
(:data:`POSITION_MODES`), not a branch in every step.  A position is a plain dict
(journaled as JSON): ``{"gtid": "..."}`` or ``{"file": "...", "pos": N}``.

A GTID position is stored in its canonical text (the flavor's value type's ``str``:
MySQL's ``",\\n"`` between UUID sets and its UUID order are gone), so positions are
printed on one line and two reads of an unchanged server are equal dicts.
:func:`same` compares recorded positions by value all the same (a journal written
by an older roleswap may hold the server's raw text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from roleswap.errors import StepError
from roleswap.mysql.dialect import gtid_wait_reached, pos_wait_reached
from roleswap.mysql.gtid import canonical_gtid_text
from roleswap.swap.context import SwapContext


@dataclass(frozen=True)
class PositionMode:
    """How to read a server's binlog position and wait for a replica to apply it."""

    name: str
    read: Callable[[SwapContext, str], dict[str, Any]]
    wait: Callable[[SwapContext, str, dict[str, Any], float], bool | None]


def read_gtid(ctx: SwapContext, name: str) -> dict[str, Any]:
    """What ``name`` has logged, as canonical text (see the module docstring)."""
    d = ctx.dialect(name)
    raw = ctx.run(name, [d.gtid_position()])[0]["g"]
    return {"gtid": str(d.parse_gtid(raw.decode() if isinstance(raw, bytes) else raw))}


def wait_gtid(ctx: SwapContext, name: str, pos: dict[str, Any], timeout: float) -> bool | None:
    if not pos["gtid"]:
        return True  # nothing was ever written
    rows = ctx.run(name, [ctx.dialect(name).wait_for_gtid(pos["gtid"], timeout)])
    return gtid_wait_reached(next(iter(rows[0].values())))


def read_file_pos(ctx: SwapContext, name: str) -> dict[str, Any]:
    rows = ctx.run(name, [ctx.dialect(name).binlog_status()])
    if not rows:
        raise StepError(f"{name} has no binary log ({ctx.dialect(name).binlog_status_sql} is empty)",
                        remedy=f"enable log_bin on {name}")
    return {"file": str(rows[0]["File"]), "pos": int(rows[0]["Position"])}


def wait_file_pos(ctx: SwapContext, name: str, pos: dict[str, Any], timeout: float) -> bool | None:
    rows = ctx.run(name, [ctx.dialect(name).wait_for_pos(pos["file"], pos["pos"], timeout)])
    return pos_wait_reached(next(iter(rows[0].values())))


POSITION_MODES = {
    "gtid": PositionMode("gtid", read_gtid, wait_gtid),
    "filepos": PositionMode("filepos", read_file_pos, wait_file_pos),
}


def mode(ctx: SwapContext) -> PositionMode:
    return POSITION_MODES[ctx.state.get("mode", "gtid")]


def missed(name: str, result: bool | None, goal: str, timeout: float) -> str:
    """Why ``name`` is not at ``goal`` after a wait that returned ``result``: it timed
    out (False), or it is not replicating at all (None: MASTER_POS_WAIT /
    SOURCE_POS_WAIT return NULL with the SQL thread stopped or no source)."""
    if result is None:
        return (f"{name} is not replicating (SQL thread stopped, or no source), so it cannot "
                f"reach {goal}")
    return f"{name} did not reach {goal} within {timeout:g}s"


def canonical(pos: dict[str, Any]) -> dict[str, Any]:
    """``pos`` with its GTID text canonical (file/position unchanged)."""
    if "gtid" in pos:
        return {**pos, "gtid": canonical_gtid_text(pos["gtid"])}
    return {**pos, "pos": int(pos["pos"])}


def same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Two positions are the same place (by value: GTID text order and line breaks
    do not matter)."""
    if a is None or b is None:
        return a is b
    return canonical(a) == canonical(b)


def fmt(pos: dict[str, Any]) -> str:
    """One line: the canonical GTID position, or ``file:pos``."""
    if "gtid" in pos:
        return canonical_gtid_text(pos["gtid"]) or "(empty)"
    return f"{pos['file']}:{pos['pos']}"
