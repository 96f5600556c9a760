"""A bounded load generator for the demo app: reads and writes at a steady rate.

``concurrency`` threads each keep one HTTP connection (loopback only) and send
at ``rate / concurrency`` requests/s; a thread that falls behind (its requests are
held) does not burst to catch up.  It stops by itself after ``max_requests`` or
``max_seconds``, whichever comes first (or on :meth:`LoadGenerator.stop`).

Per request it records status, latency, the acknowledged id of a write, and the hold
time the app reported (``X-Demo-Held-Ms``).  A read asks for a recently acknowledged
id: a 404 there would be a lost write seen by a user, so it counts as a failure.

``client="httpx"`` (the default) uses httpx; ``client="stdlib"`` uses :mod:`http.client`,
which costs the generator about a third of the CPU per request: the bench's high write
rates use it so that, on a small machine, the CPU goes to the app and the servers.
"""

from __future__ import annotations

import http.client
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from json import dumps, loads
from typing import Any
from urllib.parse import urlsplit

import httpx

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Rec:
    kind: str  # "write" | "read"
    start: float  # time.monotonic() when sent
    end: float
    status: int  # HTTP status; 0 = no response (transport error)
    error: str = ""
    row_id: int | None = None  # write: the acknowledged id; read: the id asked for
    key: str = ""
    server: str = ""  # which primary served it
    held_ms: float | None = None  # the app says the request was held this long
    served_paused: bool = False
    pid: int = 0  # the app process that answered

    @property
    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class LoadConfig:
    base_url: str
    rate: float = 200.0  # requests per second, all threads together
    write_ratio: float = 0.5
    concurrency: int = 16
    max_requests: int = 100_000
    max_seconds: float = 60.0
    timeout: float = 15.0  # per request; above the middleware's max_hold
    client: str = "httpx"  # or "stdlib" (http.client: lighter, for high rates)

    def validate(self) -> None:
        host = urlsplit(self.base_url).hostname
        if host not in LOOPBACK:
            raise ValueError(f"the load generator only targets loopback; got host {host!r}")
        if not (0 < self.rate <= 20_000) or not (0 <= self.write_ratio <= 1):
            raise ValueError("rate must be in (0, 20000] and write_ratio in [0, 1]")
        if not (1 <= self.concurrency <= 512) or self.max_requests < 1 or self.max_seconds <= 0:
            raise ValueError("concurrency 1-512, max_requests >= 1 and max_seconds > 0 are required")
        if self.client not in ("httpx", "stdlib"):
            raise ValueError(f"client must be httpx or stdlib, not {self.client!r}")


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


@dataclass
class Summary:
    sent: int
    ok: int
    failed: int
    held: int
    served_paused: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    held_p99_ms: float  # time held, as reported by the app
    held_max_ms: float
    writes_sent: int
    acked: dict[int, str] = field(default_factory=dict)  # id -> key
    failures: dict[str, int] = field(default_factory=dict)  # reason -> count
    slowest: Rec | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent, "ok": self.ok, "failed": self.failed, "held": self.held,
            "served_while_paused": self.served_paused, "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1), "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2), "max_ms": round(self.max_ms, 2),
            "held_p99_ms": round(self.held_p99_ms, 2), "held_max_ms": round(self.held_max_ms, 2),
            "writes_sent": self.writes_sent, "writes_acked": len(self.acked),
            "failures": self.failures,
        }


def summarize(recs: list[Rec], seconds: float) -> Summary:
    lat = sorted(r.latency_ms for r in recs)
    held = sorted(r.held_ms for r in recs if r.held_ms is not None)
    failures = Counter(f"{r.kind} {r.status or ''} {r.error}".strip() for r in recs if not r.ok)
    return Summary(
        sent=len(recs), ok=sum(r.ok for r in recs), failed=sum(not r.ok for r in recs),
        held=len(held), served_paused=sum(r.served_paused for r in recs), seconds=seconds,
        p50_ms=statistics.median(lat) if lat else 0.0, p99_ms=_pct(lat, 0.99),
        max_ms=lat[-1] if lat else 0.0, held_p99_ms=_pct(held, 0.99),
        held_max_ms=held[-1] if held else 0.0,
        writes_sent=sum(r.kind == "write" for r in recs),
        acked={r.row_id: r.key for r in recs if r.kind == "write" and r.ok and r.row_id is not None},
        failures=dict(failures), slowest=max(recs, key=lambda r: r.latency_ms) if recs else None,
    )


class _Response:
    """What :meth:`LoadGenerator._one` reads from a response, for both clients."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self._body = body

    def json(self) -> Any:
        return loads(self._body)


class _StdlibClient:
    """One keep-alive :class:`http.client.HTTPConnection`; reconnects after an error, and
    before a request after ``idle`` s without one (the server may have closed it: gunicorn's
    keepalive is 5 s, and http.client would only notice after sending)."""

    def __init__(self, base_url: str, timeout: float, idle: float = 2.0) -> None:
        u = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
        self.idle = idle
        self.last = 0.0

    def _do(self, method: str, path: str, body: bytes | None = None) -> _Response:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if time.monotonic() - self.last > self.idle:
            self.conn.close()  # the next request connects afresh
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.conn.close()
            raise
        if resp.will_close:
            self.conn.close()
        self.last = time.monotonic()
        return _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def post(self, path: str, json: Any) -> _Response:
        return self._do("POST", path, dumps(json).encode())

    def get(self, path: str) -> _Response:
        return self._do("GET", path)

    def close(self) -> None:
        self.conn.close()


TRANSPORT_ERRORS = (httpx.HTTPError, http.client.HTTPException, OSError)


class LoadGenerator:
    def __init__(self, cfg: LoadConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.records: list[Rec] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._issued = 0
        self._recent: list[int] = []  # acknowledged ids that reads ask for
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.ended_at = 0.0

    def start(self) -> LoadGenerator:
        self.started_at = time.monotonic()
        for i in range(self.cfg.concurrency):
            t = threading.Thread(target=self._worker, args=(i,), name=f"load-{i}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> Summary:
        """Wait for every thread (at most ``timeout`` s more than max_seconds allows)."""
        limit = timeout if timeout is not None else self.cfg.max_seconds + self.cfg.timeout + 5
        deadline = time.monotonic() + limit
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.ended_at = time.monotonic()
        return self.summary()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def summary(self) -> Summary:
        with self._lock:
            recs = list(self.records)
        end = self.ended_at or time.monotonic()
        return summarize(recs, end - self.started_at)

    def _ticket(self) -> bool:
        with self._lock:
            if self._issued >= self.cfg.max_requests:
                return False
            self._issued += 1
            return True

    def _worker(self, i: int) -> None:
        cfg = self.cfg
        interval = cfg.concurrency / cfg.rate
        rng = random.Random(i)  # noqa: S311 - picks the request mix, not secrets
        deadline = self.started_at + cfg.max_seconds
        next_at = self.started_at + interval * i / cfg.concurrency
        client: Any = (_StdlibClient(cfg.base_url, cfg.timeout) if cfg.client == "stdlib" else
                       httpx.Client(base_url=cfg.base_url, timeout=cfg.timeout, trust_env=False,
                                    limits=httpx.Limits(max_connections=1)))
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    return
                if next_at > now:
                    if self._stop.wait(min(next_at, deadline) - now):
                        return
                    continue
                next_at = max(next_at + interval, now)  # late: no burst to catch up
                if not self._ticket():
                    return
                rec = self._one(client, rng)
                with self._lock:
                    self.records.append(rec)
                    if rec.kind == "write" and rec.ok and rec.row_id is not None:
                        self._recent.append(rec.row_id)
                        del self._recent[:-200]
        finally:
            client.close()

    def _one(self, client: Any, rng: random.Random) -> Rec:
        target: int | None = None
        if rng.random() < self.cfg.write_ratio:
            kind, key = "write", uuid.uuid4().hex
        else:
            kind, key = "read", ""
            with self._lock:
                target = rng.choice(self._recent) if self._recent else None
        start = time.monotonic()
        try:
            if kind == "write":
                resp = client.post("/write", json={"k": key})
            else:
                resp = client.get(f"/read/{target}" if target is not None else "/read")
        except TRANSPORT_ERRORS as e:
            return Rec(kind, start, time.monotonic(), 0, type(e).__name__, key=key)
        end = time.monotonic()
        rec = Rec(kind, start, end, resp.status_code, key=key, row_id=target)
        # lower-case names: the stdlib client's dict has them so; httpx's lookup ignores case
        held = resp.headers.get("x-demo-held-ms")
        rec.held_ms = float(held) if held else None
        rec.served_paused = resp.headers.get("x-demo-served-paused") == "1"
        rec.pid = int(resp.headers.get("x-demo-pid") or 0)
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        rec.server = str(body.get("server", ""))
        if resp.status_code != 200:
            rec.error = str(body.get("error", ""))[:80]
        elif kind == "write":
            if body.get("k") != key or not isinstance(body.get("id"), int):
                rec.status, rec.error = 0, "write answered without its id/key"
            else:
                rec.row_id = int(body["id"])
        return rec
