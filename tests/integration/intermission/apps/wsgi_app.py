"""A Flask app behind the WSGI middleware (one line: app.wsgi_app = ...)."""

from __future__ import annotations

import os
import time

import common
from flask import Flask, jsonify, request

from intermission.wsgi import IntermissionMiddleware

app = Flask(__name__)


@app.get("/")
def index() -> object:
    seq = common.next_seq()
    return jsonify(pid=os.getpid(), seq=seq, tag=request.args.get("tag"),
                   payload=common.resume_state["payload"], hooks=common.resume_state["calls"])


@app.get("/slow")
def slow() -> object:
    time.sleep(float(request.args.get("s", "1")))
    return jsonify(pid=os.getpid(), slept=True)


@app.get("/health")
def health() -> object:
    return jsonify(pid=os.getpid(), ok=True)


app.wsgi_app = IntermissionMiddleware(app.wsgi_app, **common.options())  # type: ignore[method-assign]
