"""Protocol: key names, encoding/decoding, validation."""

from __future__ import annotations

import json

import pytest

from intermission import protocol as p
from intermission.errors import ProtocolError


def lease(**kw: object) -> p.Lease:
    base: dict[str, object] = dict(token="abcdef0123456789", reason="switch", owner="ops@h",
                                   started_at=100.0, expires_at=130.0, ttl=30.0)
    base.update(kw)
    return p.Lease(**base)  # type: ignore[arg-type]


def test_key_names_share_a_cluster_hash_tag() -> None:
    keys = [p.lease_key("web"), p.resumed_key("web"), p.proc_key("web", "h:1:ab"),
            p.procs_index_key("web"), p.events_channel("web"), p.acks_channel("web")]
    assert keys == ["intermission:{web}:pause", "intermission:{web}:resumed",
                    "intermission:{web}:proc:h:1:ab", "intermission:{web}:procs",
                    "intermission:{web}:events", "intermission:{web}:acks"]


@pytest.mark.parametrize("scope", ["", "a b", "{x}", "x*", "-lead", "a" * 101, 5, None])
def test_bad_scopes(scope: object) -> None:
    with pytest.raises(ValueError, match="scope must be"):
        p.validate_scope(scope)


def test_lease_round_trip_and_versioned() -> None:
    le = lease()
    raw = le.encode()
    assert json.loads(raw)["v"] == p.VERSION
    assert p.Lease.decode(raw) == le
    assert p.Lease.decode(raw.encode()) == le


@pytest.mark.parametrize("raw", [
    None, "", "nope", "[]", '{"v": 2, "token": "abcdef0123456789"}',
    '{"v": 1, "token": "abcdef0123456789"}',
    '{"v":1,"token":"short","reason":"","owner":"","started_at":1,"expires_at":2,"ttl":1}',
    '{"v":1,"token":"abcdef0123456789","reason":"","owner":"","started_at":true,'
    '"expires_at":2,"ttl":1}',
    '{"v":1,"token":"abcdef0123456789","reason":"","owner":"","started_at":1,'
    '"expires_at":2,"ttl":0}',
])
def test_lease_decode_rejects_garbage(raw: str | None) -> None:
    with pytest.raises(ProtocolError):
        p.Lease.decode(raw)


def test_lease_validates_on_construction() -> None:
    with pytest.raises(ValueError, match="ttl must be"):
        lease(ttl=0.01)
    with pytest.raises(ValueError, match="reason must be"):
        lease(reason="x" * 500)
    with pytest.raises(ValueError, match="token must be"):
        lease(token="has space!")


def test_events_round_trip() -> None:
    le = lease()
    for ev in (p.Event("pause", le.token, 30000, le), p.Event("renew", le.token, 1500, le),
               p.Event("resume", le.token, payload={"primary": "db2"}),
               p.Event("resume", le.token)):
        assert p.Event.decode(ev.encode()) == ev


@pytest.mark.parametrize("obj", [
    {"type": "explode", "token": "abcdef0123456789"},
    {"type": "pause", "token": "abcdef0123456789", "ttl_ms": 1000, "lease": None},
    {"type": "pause", "token": "abcdef0123456789", "ttl_ms": 0},
    {"type": "resume", "token": "abcdef0123456789", "payload": [1]},
])
def test_event_decode_rejects_bad_messages(obj: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        p.Event.decode(json.dumps({"v": 1, **obj}))


def test_pause_event_token_must_match_lease() -> None:
    le = lease()
    raw = json.loads(p.Event("pause", le.token, 1000, le).encode())
    raw["token"] = "zzzzzzzzzzzzzzzz"
    with pytest.raises(ProtocolError, match="does not match"):
        p.Event.decode(json.dumps(raw))


def test_process_info_round_trip_and_rejects_bad() -> None:
    info = p.ProcessInfo(id="host:12:abc", host="host", pid=12, kind="wsgi", started_at=1.0,
                         updated_at=2.0, in_flight=3, held=4, paused=True,
                         acked_token="abcdef0123456789", redis_ok=False,
                         metrics={"held_total": 4.0}, hold_buckets=[[0.001, 1.0]])
    assert p.ProcessInfo.decode(info.encode()) == info
    raw = json.loads(info.encode())
    raw["in_flight"] = "3"
    with pytest.raises(ProtocolError):
        p.ProcessInfo.decode(json.dumps(raw))
    raw = json.loads(info.encode())
    raw["hold_buckets"] = [[1]]
    with pytest.raises(ProtocolError):
        p.ProcessInfo.decode(json.dumps(raw))
    raw = json.loads(info.encode())
    raw["id"] = "bad id"
    with pytest.raises(ProtocolError):
        p.ProcessInfo.decode(json.dumps(raw))


def test_resume_record_round_trip() -> None:
    rec = p.ResumeRecord("abcdef0123456789", {"a": 1}, 5.0)
    assert p.ResumeRecord.decode(rec.encode()) == rec


def test_payload_validation() -> None:
    assert p.validate_payload(None) is None
    assert p.validate_payload({"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(ValueError, match="must be a dict"):
        p.validate_payload("x")
    with pytest.raises(ValueError, match="JSON-serialisable"):
        p.validate_payload({"a": object()})
    with pytest.raises(ValueError, match="limit"):
        p.validate_payload({"a": "x" * 20000})


@pytest.mark.parametrize("url,masked", [
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://user:pw@h/1", "redis://user:***@h/1"),
    ("rediss://h:6380/0", "rediss://h:6380/0"),
    ("redis://h", "redis://h"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert p.mask_url(url) == masked
    assert "pw" not in p.mask_url(url)


def test_new_tokens_are_valid_and_unique() -> None:
    tokens = {p.new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(p.validate_token(t) for t in tokens)


def test_process_info_encoding_is_exactly_the_dataclass_fields() -> None:
    """``encode`` is hand-written for speed: it must stay the JSON of every field."""
    from dataclasses import asdict

    info = p.ProcessInfo(id="host:12:abc", host="host", pid=12, kind="asgi", started_at=1.5,
                         updated_at=2.5, in_flight=0, held=2, paused=False, acked_token=None,
                         metrics={"held_total": 2.0, "hold_seconds_max": 0.25},
                         hold_buckets=[[0.001, 0.0], [1e9, 2.0]])
    assert info.encode() == p._dumps(asdict(info))


def test_pause_event_carries_a_validated_lease() -> None:
    le = lease()
    assert p.Event.decode(p.Event("renew", le.token, 1000, le).encode()).lease == le
    raw = json.loads(p.Event("pause", le.token, 1000, le).encode())
    raw["lease"]["ttl"] = 0  # below MIN_TTL
    with pytest.raises(ProtocolError, match="pause lease"):
        p.Event.decode(json.dumps(raw))
