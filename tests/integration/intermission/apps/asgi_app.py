"""A Starlette app behind the ASGI middleware (app.add_middleware)."""

from __future__ import annotations

import asyncio
import os

import common
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from intermission.asgi import IntermissionMiddleware


async def index(request: Request) -> JSONResponse:
    seq = common.next_seq()
    return JSONResponse({"pid": os.getpid(), "seq": seq, "tag": request.query_params.get("tag"),
                         "payload": common.resume_state["payload"],
                         "hooks": common.resume_state["calls"]})


async def slow(request: Request) -> JSONResponse:
    await asyncio.sleep(float(request.query_params.get("s", "1")))
    return JSONResponse({"pid": os.getpid(), "slept": True})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid(), "ok": True})


app = Starlette(routes=[Route("/", index), Route("/slow", slow), Route("/health", health)])
app.add_middleware(IntermissionMiddleware, **common.options())
