"""The demo app for WSGI: Flask behind the intermission middleware, for gunicorn.

    ROLESWAP_CONFIG=.lab/roleswap.toml gunicorn -w 4 -k gthread --threads 8 \\
        -c python:roleswap.demo.gunicorn_conf -b 127.0.0.1:8000 roleswap.demo.app_wsgi:app

``POST /write`` (JSON ``{"k": "<key>"}`` optional) -> ``{"id", "k", "server"}`` after COMMIT,
or 503 if the write was refused / the connection lost (never acknowledged).
``GET /read`` (newest row), ``GET /read/<id>`` (404 if absent), ``GET /health`` (never held).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flask import Flask, Response, jsonify, request

from intermission.wsgi import IntermissionMiddleware
from roleswap.demo.common import ARRIVAL_KEY, DemoState, StampWSGI, parse_key
from roleswap.demo.db import Settings, WriteFailed

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def create_flask(state: DemoState) -> Flask:
    flask_app = Flask("roleswap.demo")

    def respond(body: Mapping[str, object], status: int, start: float) -> Response:
        resp = jsonify(body)
        resp.status_code = status
        resp.headers["X-Demo-Pid"] = str(state.pid)
        arrival = request.environ.get(ARRIVAL_KEY)
        for k, v in state.tracker.classify(arrival, start).items():
            resp.headers[k] = v
        return resp

    @flask_app.post("/write")
    def write() -> Response:
        start = time.monotonic()
        data = request.get_json(silent=True) or {}
        try:
            key = parse_key(data.get("k") if isinstance(data, dict) else None)
        except ValueError as e:
            return respond({"error": str(e)}, 400, start)
        try:
            return respond(state.db.write(key), 200, start)
        except WriteFailed as e:
            return respond({"error": e.reason}, 503, start)

    @flask_app.get("/read")
    @flask_app.get("/read/<int:row_id>")
    def read(row_id: int | None = None) -> Response:
        start = time.monotonic()
        try:
            row = state.db.read(row_id)
        except WriteFailed as e:
            return respond({"error": e.reason}, 503, start)
        if row is None and row_id is None:  # an empty table is not an error
            return respond({"id": None, "server": state.db.primary.name}, 200, start)
        if row is None:
            missing = {"error": "not found", "id": row_id, "server": state.db.primary.name}
            return respond(missing, 404, start)
        return respond(row, 200, start)

    @flask_app.get("/health")
    def health() -> Response:
        return jsonify(state.health())

    return flask_app


def create_app(settings: Settings | None = None) -> WSGIApplication:
    """The full WSGI stack: arrival stamp -> intermission -> Flask."""
    state = DemoState(settings)
    flask_app = create_flask(state)
    held = IntermissionMiddleware(flask_app.wsgi_app, **state.middleware_options())
    return StampWSGI(held)


app = create_app()
