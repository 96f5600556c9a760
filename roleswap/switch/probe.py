"""What a switch method proves before traffic resumes: a NEW connection through the way
apps connect (a VIP, a proxy's frontend) reaches the intended server, by ``@@server_id``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from roleswap.config import ServerConfig
from roleswap.mysql import conn as mconn

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext


def server_id_via(ctx: SwapContext, name: str, host: str, port: int, timeout: float = 1.0) -> int:
    """``@@server_id`` behind a NEW connection to ``host:port`` (``name`` for messages;
    raises ServerError)."""
    target = ServerConfig(name=name, host=host, port=port)
    c = mconn.connect(target, ctx.config.mysql, timeout=timeout, tls=ctx.config.tls)
    try:
        return int(mconn.run(c, target, [("SELECT @@server_id AS id", ())])[0]["id"])
    finally:
        c.close()


def server_id(ctx: SwapContext, name: str) -> int:
    """``@@server_id`` of configured server ``name``, on the swap's connection."""
    return int(ctx.query(name, "SELECT @@server_id AS id")[0]["id"])
