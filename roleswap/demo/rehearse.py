"""``python -m roleswap.demo.rehearse``: the compose lab's swap under load (docker/compose.yaml).

The same run as ``scripts/demo``, against servers, Redis and an app that already run in
containers: wait until the app answers and every one of its workers has registered
with intermission, then run the demo's scenario (:func:`roleswap.demo.scenario.run_scenario`):
a steady read/write load, ``roleswap --from db1 --to db2 --yes`` and back (each the
real CLI, ``--json``), the read_only sampler, then the proof
(:func:`roleswap.demo.verify.check_consistency`) and the demo's report.  Exit 0 only if
no request failed, no acknowledged write was lost and replication is healthy.

In the compose lab this runs in the demo-app image and shares the app container's
network namespace (``network_mode: service:app``): the app is then at
http://127.0.0.1:8000, so the load generator's loopback-only rule holds as it is, and
the servers and Redis are reached by their service names, as the config says.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

import httpx

from intermission.controller import Controller
from roleswap.config import load_config
from roleswap.demo.main import Console, _load_line, report, show_progress
from roleswap.demo.scenario import run_scenario
from roleswap.demo.verify import node_conn

DEFAULT_URL = "http://127.0.0.1:8000"


def wait_for_app(url: str, redis_url: str, scope: str, workers: int, timeout: float,
                 con: Console) -> float:
    """Until ``url``/health answers 200 and ``workers`` app processes have registered with
    intermission (a pause is only safe once every worker acknowledges it); the seconds it took."""
    t0 = time.monotonic()
    ctrl = Controller(redis_url, scope)
    last = ""
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            try:
                healthy = client.get(f"{url}/health").status_code == 200
            except httpx.HTTPError as e:
                healthy, last = False, f"{url}/health: {type(e).__name__}"
            if healthy:
                try:
                    # processes of other containers may share PIDs: count (host, pid)
                    seen = {(p.host, p.pid) for p in ctrl.status().processes}
                except Exception as e:  # Redis not there yet: keep waiting
                    seen, last = set(), f"intermission status: {type(e).__name__}"
                if len(seen) >= workers:
                    return time.monotonic() - t0
                last = f"{len(seen)} of {workers} app worker(s) registered with intermission"
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the app at {url} was not ready after {timeout:g} s ({last})")
            con.progress(f"  waiting for the app: {last or 'starting'}")
            time.sleep(0.2)


def server_label(config_path: str, name: str) -> str:
    """What the report names: ``SELECT VERSION()`` of server ``name``."""
    conn = node_conn(load_config(config_path), name, read_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION() AS v")
            row = cur.fetchone()
    finally:
        conn.close()
    v = str((row["v"] if isinstance(row, dict) else row[0]) if row else "?")
    return f"{'MariaDB' if 'mariadb' in v.lower() else 'MySQL'} {v}"


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # `docker compose down` meanwhile: stop the load, report nothing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m roleswap.demo.rehearse",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.environ.get("ROLESWAP_CONFIG"),
                    help="roleswap config (default $ROLESWAP_CONFIG)")
    ap.add_argument("--url", default=DEFAULT_URL, help=f"the demo app (default {DEFAULT_URL}; loopback only)")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("DEMO_WORKERS", "4")),
                    help="app worker processes to wait for (default $DEMO_WORKERS or 4)")
    ap.add_argument("--swaps", type=int, default=2, help="swaps, there and back alternately (default 2)")
    ap.add_argument("--partner", default="db2", help="the replica the first swap promotes (default db2)")
    ap.add_argument("--rate", type=float, default=250.0, help="requests/s (default 250)")
    ap.add_argument("--ready-timeout", type=float, default=180.0,
                    help="seconds to wait for the app and its workers (default 180)")
    args = ap.parse_args(argv)
    if not args.config:
        ap.error("--config or ROLESWAP_CONFIG is required")
    if not 1 <= args.swaps <= 50 or args.rate <= 0 or args.workers < 1:
        ap.error("--swaps must be 1-50, --rate > 0 and --workers >= 1")
    signal.signal(signal.SIGTERM, _sigterm)
    con = Console()
    t0 = time.monotonic()
    try:
        cfg = load_config(args.config)
        if cfg.redis_url is None:
            raise RuntimeError(f"{args.config} has no [redis] url")
        con.line(f"roleswap rehearse: swap the primary {args.swaps} time(s) under live web traffic "
                 f"({', '.join(sorted(cfg.servers))}; app {args.url})")
        waited = wait_for_app(args.url, cfg.redis_url.reveal(), cfg.scope, args.workers,
                              args.ready_timeout, con)
        label = server_label(args.config, args.partner)
        con.line(f"  app            gunicorn x{args.workers} behind the intermission middleware: "
                 f"ready after {waited:.1f} s")
        con.line(f"  servers        {label}")
        con.line(f"  load           {args.rate:.0f} req/s, half writes (POST /write), "
                 "half reads (GET /read/<id>)")


        res = run_scenario(args.config, args.url, swaps=args.swaps, rate=args.rate, warmup=2.0, gap=2.0,
                           settle=0.5, partner=args.partner, progress=show_progress(con))
        con.line(_load_line(res.load))
        for line in report(res, args.workers, time.monotonic() - t0, "endpoint", server=label):
            con.line(line)
        return 0 if not res.problems() else 1
    except KeyboardInterrupt:
        con.line("interrupted")
        return 130
    except Exception as e:
        con.line(f"FAIL: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
