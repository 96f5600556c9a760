"""Binlog positions: how to read one and wait for a replica to apply it.

GTID and file/position topologies differ only here, so each is a small table entry
(:data:`POSITION_MODES`), not a branch in every step.  A position is a plain dict
(journaled as JSON): ``{"gtid": "..."}`` or ``{"file": "...", "pos": N}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from roleswap.errors import StepError
from roleswap.mysql.dialect import gtid_wait_reached, pos_wait_reached
from roleswap.swap.context import SwapContext


@dataclass(frozen=True)
class PositionMode:
    """How to read a server's binlog position and wait for a replica to apply it."""

    name: str
    read: Callable[[SwapContext, str], dict[str, Any]]
    wait: Callable[[SwapContext, str, dict[str, Any], float], bool | None]


def read_gtid(ctx: SwapContext, name: str) -> dict[str, Any]:
    d = ctx.dialect(name)
    col = "gtid_binlog_pos" if d.flavor == "mariadb" else "gtid_executed"
    rows = ctx.query(name, f"SELECT @@GLOBAL.{col} AS pos")
    return {"gtid": str(rows[0]["pos"] or "")}


def wait_gtid(ctx: SwapContext, name: str, pos: dict[str, Any], timeout: float) -> bool | None:
    if not pos["gtid"]:
        return True  # nothing was ever written
    rows = ctx.run(name, [ctx.dialect(name).wait_for_gtid(pos["gtid"], timeout)])
    return gtid_wait_reached(next(iter(rows[0].values())))


def read_file_pos(ctx: SwapContext, name: str) -> dict[str, Any]:
    rows = ctx.run(name, [ctx.dialect(name).binlog_status()])
    if not rows:
        raise StepError(f"{name} has no binary log (SHOW MASTER STATUS is empty)",
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


def fmt(pos: dict[str, Any]) -> str:
    if "gtid" in pos:
        return pos["gtid"] or "(empty)"
    return f"{pos['file']}:{pos['pos']}"
