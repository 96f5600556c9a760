"""Hold metrics: kept as plain numbers in each process (always shipped in the heartbeat,
so ``intermission status`` shows them) and exported through prometheus-client when it
is installed.

Prometheus series (label ``scope``): ``intermission_held_requests`` and
``intermission_in_flight_requests`` (gauges), ``intermission_paused`` (gauge 0/1),
``intermission_held_total``, ``intermission_released_total``,
``intermission_timed_out_total`` (counters) and ``intermission_hold_seconds``
(histogram).  Gauges and counters are synced from the heartbeat thread, never on the
request path.  Under gunicorn, use prometheus-client's multiprocess mode as usual.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any

BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"),
)


@dataclass
class HoldStats:
    """Counters of one gate.  Mutated only under the gate's lock."""

    held_total: int = 0
    released_total: int = 0
    timed_out_total: int = 0
    hold_seconds_sum: float = 0.0
    hold_seconds_max: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))

    def observe(self, seconds: float) -> None:
        self.released_total += 1
        self.hold_seconds_sum += seconds
        self.hold_seconds_max = max(self.hold_seconds_max, seconds)
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def as_dict(self) -> dict[str, float]:
        return {
            "held_total": self.held_total,
            "released_total": self.released_total,
            "timed_out_total": self.timed_out_total,
            "hold_seconds_sum": round(self.hold_seconds_sum, 6),
            "hold_seconds_max": round(self.hold_seconds_max, 6),
        }

    def bucket_pairs(self) -> list[list[float]]:
        """Cumulative [upper bound, count] pairs, skipping empty leading buckets' noise."""
        out: list[list[float]] = []
        running = 0
        for le, n in zip(BUCKETS, self.buckets, strict=True):
            running += n
            out.append([le if le != float("inf") else 1e9, running])
        return out


def hold_quantile(buckets: list[list[float]], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` (None if nothing observed)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    for le, count in buckets:
        if count >= target:
            return le
    return buckets[-1][0]


_lock = threading.Lock()
_families: dict[str, Any] | None = None


def _prometheus() -> dict[str, Any] | None:
    """Create the metric families once per process; None without prometheus-client."""
    global _families
    with _lock:
        if _families is not None:
            return _families or None
        try:
            import prometheus_client as pc
        except ImportError:
            _families = {}
            return None
        labels = ["scope"]
        _families = {
            "held": pc.Gauge("intermission_held_requests", "Requests held now", labels),
            "in_flight": pc.Gauge(
                "intermission_in_flight_requests", "Requests past the gate, running", labels
            ),
            "paused": pc.Gauge("intermission_paused", "1 while a pause is applied", labels),
            "held_total": pc.Counter("intermission_held", "Requests held", labels),
            "released_total": pc.Counter(
                "intermission_released", "Held requests released", labels
            ),
            "timed_out_total": pc.Counter(
                "intermission_timed_out", "Held requests answered 503 at max_hold", labels
            ),
            "hold": pc.Histogram(
                "intermission_hold_seconds", "Time a request was held", labels,
                buckets=BUCKETS,
            ),
        }
        return _families


class Exporter:
    """Pushes one gate's numbers into prometheus-client (no-op when not installed)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._last: dict[str, float] = {}
        self._enabled = _prometheus() is not None

    def observe_holds(self, seconds: list[float]) -> None:
        """Record the hold durations of a batch of released requests."""
        fam = _prometheus() if self._enabled else None
        if fam and seconds:
            hist = fam["hold"].labels(self.scope)  # looked up once per batch
            for s in seconds:
                hist.observe(s)

    def sync(self, *, held: int, in_flight: int, paused: bool, stats: dict[str, float]) -> None:
        fam = _prometheus() if self._enabled else None
        if not fam:
            return
        fam["held"].labels(self.scope).set(held)
        fam["in_flight"].labels(self.scope).set(in_flight)
        fam["paused"].labels(self.scope).set(1 if paused else 0)
        for name in ("held_total", "released_total", "timed_out_total"):
            delta = stats[name] - self._last.get(name, 0)
            if delta > 0:
                fam[name].labels(self.scope).inc(delta)
            self._last[name] = stats[name]
