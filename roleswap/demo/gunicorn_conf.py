"""gunicorn settings for the demo app (``-c python:roleswap.demo.gunicorn_conf``).

Every worker starts its intermission agent at boot, so idle workers register and
acknowledge pauses too (otherwise an agent starts on a worker's first request).
"""

from __future__ import annotations

worker_class = "gthread"
graceful_timeout = 5
timeout = 30
keepalive = 5
accesslog = None


def post_worker_init(worker: object) -> None:
    import intermission

    intermission.start_all()
