"""The intermission wire protocol: every Redis key name and message format lives here.

Keys for a scope ``S`` (the ``{S}`` braces are a Redis Cluster hash tag, so all keys of
one scope live in one slot and the Lua scripts in :mod:`intermission.store` stay legal):

``intermission:{S}:pause``
    The pause LEASE: JSON :class:`Lease`, always written with a TTL (``PX``).  Present
    means paused.  Only the holder of ``token`` may renew or resume it.
``intermission:{S}:resumed``
    The last resume: JSON :class:`ResumeRecord` (token + payload), TTL'd.  Lets a process
    that missed the pub/sub message still get the payload, and makes a repeated resume
    report "already resumed".
``intermission:{S}:proc:<id>``
    One heartbeat per live app process: JSON :class:`ProcessInfo`, TTL'd.
``intermission:{S}:procs``
    Sorted set indexing the heartbeats (member = id, score = expiry in Redis ms).

Pub/sub channels:

``intermission:{S}:events``
    :class:`Event` messages: ``pause``, ``renew`` (both carry the lease and its TTL in
    ms, so a process that later loses Redis still knows when the pause ends) and
    ``resume`` (carries the optional payload).
``intermission:{S}:acks``
    A process id, published whenever a process acknowledges a pause or its in-flight
    count changes while paused; the controller's drain wait wakes on it.

Every decoder validates and raises :class:`~intermission.errors.ProtocolError`.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from intermission.errors import ProtocolError

VERSION = 1
PREFIX = "intermission"
MIN_TTL = 0.1
MAX_TTL = 86_400.0
MAX_TEXT = 200
MAX_PAYLOAD_BYTES = 16_384
RESUMED_TTL_MS = 300_000  # how long a resume payload stays readable for late readers

_SCOPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]{8,64}$")
_PROC_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")

EventType = Literal["pause", "renew", "resume"]


# ----------------------------------------------------------------- names

def validate_scope(scope: object) -> str:
    """Return ``scope`` if it is a legal scope name, else raise ValueError."""
    if not isinstance(scope, str) or not _SCOPE_RE.match(scope):
        raise ValueError(
            f"scope must be 1-100 characters of letters, digits, '_', '.', '-' "
            f"starting with a letter or digit; got {scope!r}"
        )
    return scope


def validate_token(token: object) -> str:
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise ValueError(
            f"token must be 8-64 characters of letters, digits, '_' or '-'; got {token!r}"
        )
    return token


def validate_ttl(ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (
        MIN_TTL <= float(ttl) <= MAX_TTL
    ):
        raise ValueError(f"ttl must be a number of seconds in [{MIN_TTL}, {MAX_TTL}]; got {ttl!r}")
    return float(ttl)


def new_token() -> str:
    """A fresh, unguessable pause token."""
    return secrets.token_hex(12)


def _base(scope: str) -> str:
    return f"{PREFIX}:{{{validate_scope(scope)}}}"


def lease_key(scope: str) -> str:
    return f"{_base(scope)}:pause"


def resumed_key(scope: str) -> str:
    return f"{_base(scope)}:resumed"


def proc_key(scope: str, proc_id: str) -> str:
    return f"{_base(scope)}:proc:{proc_id}"


def procs_index_key(scope: str) -> str:
    return f"{_base(scope)}:procs"


def events_channel(scope: str) -> str:
    return f"{_base(scope)}:events"


def acks_channel(scope: str) -> str:
    return f"{_base(scope)}:acks"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print or log): the one in
    the user info, also for a multi-host ``redis+sentinel://`` URL, and the value of any
    query parameter whose name looks like a secret (``?sentinel_password=...``: names
    containing pass, pw, secret, token or auth)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = re.sub(r"((?:^|&)[^=&]*(?:pass|pw|secret|token|auth)[^=&]*=)[^&]*", r"\1***",
                   parts.query, flags=re.I)
    out = url.split("#", 1)[0] if parts.fragment else url
    if netloc != parts.netloc:
        out = out.replace(parts.netloc, netloc, 1)
    if query != parts.query:
        out = out.replace(f"?{parts.query}", f"?{query}", 1)
    return out


# ----------------------------------------------------------------- helpers

def _loads(raw: bytes | str | None, what: str) -> dict[str, Any]:
    if raw is None:
        raise ProtocolError(f"{what}: no value")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: not JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: expected a JSON object")
    if obj.get("v") != VERSION:
        raise ProtocolError(f"{what}: unsupported protocol version {obj.get('v')!r}")
    return obj


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps({"v": VERSION, **obj}, separators=(",", ":"), sort_keys=True)


def _get(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(name)
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ProtocolError(f"{what}: field {name!r} must be a number")
    if not isinstance(value, kind):
        raise ProtocolError(f"{what}: field {name!r} missing or of the wrong type")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"{name} must be a string of at most {MAX_TEXT} characters")
    return value


def validate_payload(payload: object) -> dict[str, Any] | None:
    """A resume payload is ``None`` or a JSON-serialisable dict of at most 16 KiB."""
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise ValueError(f"payload must be a dict or None; got {type(payload).__name__}")
    try:
        size = len(json.dumps(payload).encode())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"payload must be JSON-serialisable: {exc}") from exc
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    return payload


# ----------------------------------------------------------------- records

@dataclass(frozen=True)
class Lease:
    """The value of the pause key.  Times are wall-clock epoch seconds, for display only:
    processes compute their local deadline from the Redis TTL (clock skew safe)."""

    token: str
    reason: str
    owner: str
    started_at: float
    expires_at: float
    ttl: float

    def __post_init__(self) -> None:
        validate_token(self.token)
        validate_ttl(self.ttl)
        _text(self.reason, "reason")
        _text(self.owner, "owner")

    def encode(self) -> str:
        return _dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Lease:
        return cls.from_obj(_loads(raw, "pause lease"))

    @classmethod
    def from_obj(cls, obj: dict[str, Any], what: str = "pause lease") -> Lease:
        """A lease from an already parsed JSON object (the version is not checked here)."""
        try:
            return cls(
                token=_get(obj, "token", str, what),
                reason=_get(obj, "reason", str, what),
                owner=_get(obj, "owner", str, what),
                started_at=float(_get(obj, "started_at", (int, float), what)),
                expires_at=float(_get(obj, "expires_at", (int, float), what)),
                ttl=float(_get(obj, "ttl", (int, float), what)),
            )
        except ValueError as exc:
            raise ProtocolError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class ResumeRecord:
    """The value of the ``resumed`` key: which pause was resumed, with what payload."""

    token: str
    payload: dict[str, Any] | None
    at: float

    def encode(self) -> str:
        return _dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str | None) -> ResumeRecord:
        what = "resume record"
        obj = _loads(raw, what)
        payload = obj.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise ProtocolError(f"{what}: payload must be an object or null")
        return cls(
            token=_get(obj, "token", str, what),
            payload=payload,
            at=float(_get(obj, "at", (int, float), what)),
        )


@dataclass(frozen=True)
class Event:
    """A message on the events channel.

    ``pause``/``renew`` carry ``lease`` and ``ttl_ms`` (the lease TTL when published);
    ``resume`` carries ``payload``.
    """

    type: EventType
    token: str
    ttl_ms: int = 0
    lease: Lease | None = None
    payload: dict[str, Any] | None = None

    def encode(self) -> str:
        return _dumps({
            "type": self.type,
            "token": self.token,
            "ttl_ms": self.ttl_ms,
            "lease": asdict(self.lease) if self.lease else None,
            "payload": self.payload,
        })

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Event:
        what = "event"
        obj = _loads(raw, what)
        kind = obj.get("type")
        if kind not in ("pause", "renew", "resume"):
            raise ProtocolError(f"{what}: unknown type {kind!r}")
        token = _get(obj, "token", str, what)
        lease = None
        ttl_ms = 0
        if kind in ("pause", "renew"):
            ttl_ms = int(_get(obj, "ttl_ms", int, what))
            if ttl_ms <= 0:
                raise ProtocolError(f"{what}: ttl_ms must be positive")
            raw_lease = obj.get("lease")
            if not isinstance(raw_lease, dict):
                raise ProtocolError(f"{what}: {kind} without a lease")
            lease = Lease.from_obj(raw_lease)  # parsed once: this runs in every process
            if lease.token != token:
                raise ProtocolError(f"{what}: token does not match the lease")
        payload = obj.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise ProtocolError(f"{what}: payload must be an object or null")
        return cls(type=kind, token=token, ttl_ms=ttl_ms, lease=lease, payload=payload)


@dataclass(frozen=True)
class ProcessInfo:
    """One app process's heartbeat.

    ``in_flight``: requests past the gate and still running (exempt requests excluded).
    ``held``: requests waiting at the gate.  ``acked_token``: the last pause this
    process has applied (it holds new requests from then on).  ``metrics``: counters
    (``held_total``, ``released_total``, ``timed_out_total``, ``hold_seconds_sum``,
    ``hold_seconds_max``) and ``hold_buckets`` ([upper bound seconds, count] pairs).
    """

    id: str
    host: str
    pid: int
    kind: str
    started_at: float
    updated_at: float
    in_flight: int
    held: int
    paused: bool
    acked_token: str | None
    redis_ok: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    hold_buckets: list[list[float]] = field(default_factory=list)

    def encode(self) -> str:
        # the same JSON as ``_dumps(asdict(self))``, built by hand: asdict deep-copies the
        # metrics, and this runs on every heartbeat of every process (a test keeps them equal)
        return _dumps({
            "id": self.id, "host": self.host, "pid": self.pid, "kind": self.kind,
            "started_at": self.started_at, "updated_at": self.updated_at,
            "in_flight": self.in_flight, "held": self.held, "paused": self.paused,
            "acked_token": self.acked_token, "redis_ok": self.redis_ok,
            "metrics": self.metrics, "hold_buckets": self.hold_buckets,
        })

    @classmethod
    def decode(cls, raw: bytes | str | None) -> ProcessInfo:
        what = "heartbeat"
        obj = _loads(raw, what)
        proc_id = _get(obj, "id", str, what)
        if not _PROC_ID_RE.match(proc_id):
            raise ProtocolError(f"{what}: bad process id {proc_id!r}")
        acked = obj.get("acked_token")
        if acked is not None and not isinstance(acked, str):
            raise ProtocolError(f"{what}: acked_token must be a string or null")
        metrics = obj.get("metrics", {})
        buckets = obj.get("hold_buckets", [])
        if not isinstance(metrics, dict) or not isinstance(buckets, list):
            raise ProtocolError(f"{what}: metrics must be an object, hold_buckets a list")
        try:
            return cls._build(obj, proc_id, acked, metrics, buckets)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"{what}: {exc}") from exc

    @classmethod
    def _build(
        cls, obj: dict[str, Any], proc_id: str, acked: str | None,
        metrics: dict[str, Any], buckets: list[Any],
    ) -> ProcessInfo:
        what = "heartbeat"
        return cls(
            id=proc_id,
            host=_get(obj, "host", str, what),
            pid=int(_get(obj, "pid", int, what)),
            kind=_get(obj, "kind", str, what),
            started_at=float(_get(obj, "started_at", (int, float), what)),
            updated_at=float(_get(obj, "updated_at", (int, float), what)),
            in_flight=int(_get(obj, "in_flight", int, what)),
            held=int(_get(obj, "held", int, what)),
            paused=bool(_get(obj, "paused", bool, what)),
            acked_token=acked,
            redis_ok=bool(obj.get("redis_ok", True)),
            metrics={str(k): float(v) for k, v in metrics.items()},
            hold_buckets=[[float(a), float(b)] for a, b in buckets],
        )


def validate_proc_id(proc_id: str) -> str:
    if not _PROC_ID_RE.match(proc_id):
        raise ValueError(f"process id must match {_PROC_ID_RE.pattern}; got {proc_id!r}")
    return proc_id
