"""The demo web app, load generator and helpers behind ``scripts/demo``, the end-to-end
tests and ``scripts/bench``.

* :mod:`roleswap.demo.db` -- where the primary is; writes acknowledged only after COMMIT.
* :mod:`roleswap.demo.app_wsgi` / :mod:`roleswap.demo.app_asgi` -- the same app for
  gunicorn (Flask) and uvicorn (Starlette), behind the intermission middleware.
* :mod:`roleswap.demo.load` -- a bounded, rate-limited load generator (loopback only).
* :mod:`roleswap.demo.runner` -- start/stop the app servers by PID.
* :mod:`roleswap.demo.verify` -- lost writes, checksums, "one writable server" sampler.
"""
