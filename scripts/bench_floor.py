"""The machine's own floor, measured by scripts/bench_swap.py before any load (issue 13).

The pause window is a chain of wake-ups and round trips: Redis, the app workers, the
servers.  What one of those costs differs several-fold between machines that look alike
(the same 2 vCPUs: one VM measured a hot Redis PING at 0.03 ms, another at 0.2 ms, and a
fork at 2.3 ms), so the window from two machines only compares next to these figures.
Every figure is the p50 (and max) of ``SAMPLES`` tries on the bench's own lab, idle:

  redis_ping_hot      PING back to back on one connection (the round trip alone)
  redis_ping_idle     PING after ``IDLE`` s without traffic (the wake-ups of an idle box)
  redis_pubsub_echo   publish -> a subscriber thread wakes and publishes back -> we read it,
                      after ``IDLE`` s idle (the shape of a pause and its acknowledgement)
  thread_wake         an Event set -> a waiting thread runs and sets one back
  mysql_select_hot    SELECT 1 back to back on the primary's control connection
  mysql_select_idle   SELECT 1 after ``IDLE`` s idle
  fork                fork + exit + wait of this process (page-table work, which some
                      virtual machines make expensive)
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from roleswap.config import load_config
from roleswap.coord import client as redis_client
from roleswap.lab import Lab
from roleswap.mysql import conn as mconn

SAMPLES = 15
IDLE = 0.2  # seconds of quiet before an "idle" sample
SETTLE = 2.0  # seconds after the lab came up: its servers' start-up work ends first (a hot
# PING measured 0.56 ms right after lab_up and 0.17 ms two seconds later on the same box)


def _ms(fn: Callable[[], object], samples: int, idle: float = 0.0) -> dict[str, float]:
    v = []
    for _ in range(samples):
        if idle:
            time.sleep(idle)
        t = time.perf_counter()
        fn()
        v.append((time.perf_counter() - t) * 1000)
    return {"p50": round(statistics.median(v), 3), "max": round(max(v), 3)}


def _thread_wake(samples: int) -> dict[str, float]:
    go, back = threading.Event(), threading.Event()
    stop = False

    def echo() -> None:
        while go.wait() and not stop:
            go.clear()
            back.set()

    th = threading.Thread(target=echo, daemon=True, name="floor-echo")
    th.start()

    def once() -> None:
        go.set()
        back.wait()
        back.clear()

    try:
        return _ms(once, samples, idle=0.005)
    finally:
        stop = True
        go.set()
        th.join(1)


def _pubsub_echo(client: redis.Redis, samples: int, idle: float) -> dict[str, float]:
    chan = f"roleswap-bench-floor-{os.getpid()}"
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(chan + ":ping")
    back = client.pubsub(ignore_subscribe_messages=True)
    back.subscribe(chan + ":pong")
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            m = sub.get_message(timeout=0.5)
            if m is not None:
                client.publish(chan + ":pong", b"1")

    th = threading.Thread(target=echo, daemon=True, name="floor-pubsub")
    th.start()

    def once() -> None:
        client.publish(chan + ":ping", b"1")
        deadline = time.monotonic() + 5
        while back.get_message(timeout=1) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the pub/sub echo did not come back in 5 s")

    try:
        return _ms(once, samples, idle=idle)
    finally:
        stop.set()
        th.join(2)
        sub.close()
        back.close()


def _fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def measure_floor(lab: Lab, *, samples: int = SAMPLES, idle: float = IDLE,
                  settle: float = SETTLE) -> dict[str, Any]:
    """The figures above for ``lab`` (its Redis and its first database server), after
    ``settle`` seconds; ``samples`` tries each, the idle ones after ``idle`` s of quiet."""
    cfg = load_config(lab.config_path)
    time.sleep(settle)
    out: dict[str, Any] = {"samples": samples, "idle_s": idle}
    client = redis_client.connect(cfg)
    if client is not None:
        try:
            client.ping()
            out["redis_ping_hot"] = _ms(client.ping, samples)
            out["redis_ping_idle"] = _ms(client.ping, samples, idle=idle)
            out["redis_pubsub_echo"] = _pubsub_echo(client, samples, idle)
        finally:
            client.close()
    out["thread_wake"] = _thread_wake(samples)
    name, server = next(iter(cfg.servers.items()))
    conn = mconn.connect(server, cfg.mysql, timeout=cfg.connect_timeout, tls=cfg.tls)
    try:
        def select() -> None:
            mconn.query(conn, "SELECT 1")

        select()
        out["mysql_select_hot"] = _ms(select, samples)
        out["mysql_select_idle"] = _ms(select, samples, idle=idle)
        out["mysql_server"] = name
    finally:
        conn.close()
    out["fork"] = _ms(_fork, samples)
    return out


LABELS = (("redis_ping_hot", "Redis PING, hot"), ("redis_ping_idle", "Redis PING after {idle} s idle"),
          ("redis_pubsub_echo", "Redis pub/sub echo (idle)"), ("thread_wake", "thread wake-up round trip"),
          ("mysql_select_hot", "SELECT 1, hot"), ("mysql_select_idle", "SELECT 1 after {idle} s idle"),
          ("fork", "fork + wait"))


def floor_line(floor: dict[str, Any]) -> str:
    """One line for the report: each figure's p50 in ms."""
    idle = f"{floor.get('idle_s', IDLE):g}"
    parts = [f"{label.format(idle=idle)} {floor[key]['p50']:.2f}" for key, label in LABELS if key in floor]
    return "machine floor (p50 ms, idle lab, before the load): " + "; ".join(parts)
