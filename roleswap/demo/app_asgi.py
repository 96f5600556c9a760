"""The demo app for ASGI: Starlette behind the intermission middleware, for uvicorn.

    ROLESWAP_CONFIG=.lab/roleswap.toml uvicorn --host 127.0.0.1 --port 8000 roleswap.demo.app_asgi:app

Same endpoints as :mod:`roleswap.demo.app_wsgi`.  Queries run in Starlette's thread
pool (the driver is blocking PyMySQL); holds are asyncio futures, they occupy no thread.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from intermission.asgi import IntermissionMiddleware
from roleswap.demo.common import ARRIVAL_KEY, ASGIApp, DemoState, StampASGI, parse_key
from roleswap.demo.db import Settings, WriteFailed


def create_starlette(state: DemoState) -> Starlette:
    def respond(request: Request, body: dict[str, Any], status: int, start: float) -> JSONResponse:
        headers = {"X-Demo-Pid": str(state.pid)}
        headers.update(state.tracker.classify(request.scope.get(ARRIVAL_KEY), start))
        return JSONResponse(body, status_code=status, headers=headers)

    async def write(request: Request) -> JSONResponse:
        start = time.monotonic()
        try:
            data = await request.json()
        except ValueError:
            data = {}
        try:
            key = parse_key(data.get("k") if isinstance(data, dict) else None)
        except ValueError as e:
            return respond(request, {"error": str(e)}, 400, start)
        try:
            row = await run_in_threadpool(state.db.write, key)
        except WriteFailed as e:
            return respond(request, {"error": e.reason}, 503, start)
        return respond(request, row, 200, start)

    async def read(request: Request) -> JSONResponse:
        start = time.monotonic()
        raw = request.path_params.get("row_id")
        row_id = int(raw) if raw is not None else None
        try:
            row = await run_in_threadpool(state.db.read, row_id)
        except WriteFailed as e:
            return respond(request, {"error": e.reason}, 503, start)
        if row is None and row_id is None:  # an empty table is not an error
            return respond(request, {"id": None, "server": state.db.primary.name}, 200, start)
        if row is None:
            missing = {"error": "not found", "id": row_id, "server": state.db.primary.name}
            return respond(request, missing, 404, start)
        return respond(request, row, 200, start)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(state.health())

    return Starlette(routes=[
        Route("/write", write, methods=["POST"]),
        Route("/read", read, methods=["GET"]),
        Route("/read/{row_id:int}", read, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The full ASGI stack: arrival stamp -> intermission -> Starlette."""
    state = DemoState(settings)
    held = IntermissionMiddleware(create_starlette(state), **state.middleware_options())
    return StampASGI(held)


app = create_app()
