"""[redis] in its Sentinel form, the intermission side's redis+sentinel:// URL, and the
journal's "Redis is behind the local copy" check (pure: no server is contacted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.sentinel import SentinelConnectionPool

from intermission import client as iclient
from intermission.options import build
from intermission.protocol import mask_url
from roleswap.config import parse_config
from roleswap.coord import client as rclient
from roleswap.coord.journal import Journal, behind
from roleswap.errors import ConfigError

SENTINELS = ["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"]


def base(**redis: Any) -> dict[str, Any]:
    return {
        "cluster": "shop",
        "mysql": {"user": "roleswap", "password": "ctl"},
        "replication": {"user": "repl", "password": "rpl"},
        "redis": redis,
        "servers": {"db1": {"host": "127.0.0.1"}, "db2": {"host": "127.0.0.2"}},
    }


def test_sentinel_form_parses_and_names_master_and_sentinels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS_SENTINEL_PW", "s3cret-sentinel")
    (tmp_path / "redis.pw").write_text("s3cret-master\n")
    cfg = parse_config(base(sentinels=SENTINELS, master="shop-redis", db=2,
                            password_file="redis.pw", sentinel_password_env="RS_SENTINEL_PW"),
                       source="x.toml", base_dir=tmp_path)
    s = cfg.redis_sentinel
    assert s is not None and cfg.redis_url is None and cfg.has_redis
    assert s.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379))
    assert (s.master, s.db, s.password, s.sentinel_password) == (
        "shop-redis", 2, "s3cret-master", "s3cret-sentinel")
    shown = cfg.redis_url_masked + rclient.where(cfg) + repr(cfg) + repr(s)
    assert "s3cret" not in shown
    assert "'shop-redis'" in shown and all(a in shown for a in SENTINELS)
    assert rclient.where(cfg).endswith("([redis] sentinels/master in x.toml)")


def test_factory_builds_a_sentinel_client_without_contacting_anything() -> None:
    cfg = parse_config(base(sentinels=SENTINELS[:1], master="m", password="pw"))
    client = rclient.connect(cfg, timeout=1.5)
    assert client is not None
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "m"
    kwargs = pool.connection_kwargs
    assert kwargs["socket_timeout"] == 1.5 and kwargs["socket_connect_timeout"] == 1.5
    assert kwargs["password"] == "pw"
    sentinel = pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 1.5
    assert sentinel.get_retry().get_retries() == 0  # a dead sentinel: ask the next at once
    plain = rclient.connect(parse_config(base(url="redis://127.0.0.1:1/0")))
    assert plain is not None and not isinstance(plain.connection_pool, SentinelConnectionPool)
    assert rclient.connect(parse_config({**base(), "redis": {}})) is None


@pytest.mark.parametrize("redis,message", [
    ({"url": "redis://h:1/0", "sentinels": SENTINELS, "master": "m"}, "both url and sentinels"),
    ({"master": "m"}, "redis.master is only used with redis.sentinels"),
    ({"url": "redis://h:1/0", "password": "x"}, "redis.password is only used with"),
    ({"sentinels": "10.0.0.1:26379", "master": "m"}, "non-empty list"),
    ({"sentinels": [], "master": "m"}, "non-empty list"),
    ({"sentinels": ["10.0.0.1"], "master": "m"}, "'10.0.0.1' is not host:port"),
    ({"sentinels": ["10.0.0.1:99999"], "master": "m"}, "is not host:port"),
    ({"sentinels": ["a b:1"], "master": "m"}, "is not host:port"),
    ({"sentinels": SENTINELS}, "missing redis.master"),
    ({"sentinels": SENTINELS, "master": "bad name"}, "master name 'bad name'"),
    ({"sentinels": SENTINELS, "master": "m", "db": "0"}, "redis.db must be an integer"),
    ({"sentinels": SENTINELS, "master": "m", "password_env": "RS_NOPE_UNSET"}, "not set"),
    ({"sentinels": SENTINELS, "master": "m", "masterr": "x"}, "did you mean 'master'"),
    ({"url": "redis+sentinel://h:26379/m"}, "redis.url must start with"),
])
def test_refusals_name_the_key_and_the_fix(redis: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(base(**redis))
    assert info.value.remedy


@pytest.mark.parametrize("url,expect", [
    ("redis+sentinel://:pw@h1:1,h2:2/mymaster/3?sentinel_password=spw",
     ((("h1", 1), ("h2", 2)), "mymaster", 3, None, "pw", "spw")),
    ("redis+sentinel://u:pw@h1:26379/m", ((("h1", 26379),), "m", 0, "u", "pw", None)),
    ("redis+sentinel://h1:26379/m/0", ((("h1", 26379),), "m", 0, None, None, None)),
])
def test_sentinel_url(url: str, expect: tuple[Any, ...]) -> None:
    a = iclient.parse(url)
    assert isinstance(a, iclient.SentinelAddress)
    assert (a.sentinels, a.master, a.db, a.username, a.password, a.sentinel_password) == expect
    assert "pw" not in iclient.describe(a).replace("password", "")


@pytest.mark.parametrize("url,message", [
    ("redis+sentinel://:secret1@h1:1,h2/m", "'h2' must be host:port"),
    ("redis+sentinel://:secret1@h1:1/", "MASTER"),
    ("redis+sentinel://:secret1@h1:1/m/x", "must be a number"),
    ("redis+sentinel://:secret1@h1:1/m?sentinel_pw=secret1", "unknown Sentinel URL option"),
    ("http://:secret1@h1:1/0", "must be a redis://"),
])
def test_bad_urls_are_refused_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        iclient.parse(url)
    assert "secret1" not in str(info.value)


def test_mask_url_masks_multi_host_and_query_passwords() -> None:
    assert mask_url("redis+sentinel://:a@h1:1,h2:2/m/0?sentinel_password=b") == \
        "redis+sentinel://:***@h1:1,h2:2/m/0?sentinel_password=***"
    assert mask_url("unix:///run/redis.sock?db=1&password=x") == \
        "unix:///run/redis.sock?db=1&password=***"


def _build() -> Any:
    return build(kind="wsgi", scope="web", redis_url=None, redis_client=None, max_hold=1,
                 exempt_paths=(), exempt_methods=(), exempt=None, on_pause=None,
                 on_resume=None, release_rate=None, release_concurrency=None, hook_timeout=1,
                 poll_interval=1, heartbeat_interval=1, connect_timeout=0.5, startup_wait=0.1)


def test_middleware_accepts_a_sentinel_url_from_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERMISSION_REDIS_URL", "redis+sentinel://:pw@127.0.0.1:1/m")
    client = _build().agent._client()
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.connection_kwargs["socket_connect_timeout"] == 0.5
    monkeypatch.setenv("INTERMISSION_REDIS_URL", "redis+sentinel://:pw@127.0.0.1/m")
    with pytest.raises(ValueError, match=r"redis_url .*must be host:port") as info:
        _build()
    assert ":pw@" not in str(info.value)


# -- the journal: Redis behind the local file (lost writes) -----------------------------

class FakeRedis:
    """Just GET/SET: what the journal uses."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str) -> bool:
        self.data[key] = value
        return True


def test_journal_notices_redis_lost_writes_and_resyncs(tmp_path: Path) -> None:
    fake = FakeRedis()
    j = Journal(fake, "c", tmp_path)  # type: ignore[arg-type]
    j.begin("abc", "db1", "db2", "gtid", ["lock"], {})
    j.step("lock", "running")
    kept = dict(fake.data)  # what a replica had when the master died
    j.step("lock", "done", 1.0)
    j.set_phase("done")
    fake.data = kept  # failover: the new master lacks the last two writes
    rec = j.load()
    assert rec is not None and rec["phase"] == "done"  # the local copy wins
    assert j.redis_behind == ("Redis has swap abc at seq 2 (phase running), the local file "
                              "swap abc at seq 4 (phase done)")
    assert j.resync() and j.redis_behind is None
    assert json.loads(fake.data["roleswap:c:journal"])["seq"] == 4
    j.load()
    assert j.redis_behind is None
    fake.data = {}  # Redis lost everything (restart without persistence)
    j.load()
    assert j.redis_behind == "Redis holds no journal, the local file has swap abc at seq 4 (phase done)"


def test_behind_is_none_when_redis_is_as_new_or_newer() -> None:
    rec = {"swap_id": "a", "seq": 3, "started_at": 10.0, "phase": "done"}
    assert behind(rec, rec) is None
    assert behind({**rec, "seq": 5}, rec) is None  # another host's later writes
    assert behind({**rec, "swap_id": "b", "started_at": 20.0, "seq": 1}, rec) is None
    assert behind(None, None) is None
    assert behind({**rec, "swap_id": "old", "started_at": 5.0, "seq": 9}, rec) is not None


def test_status_names_a_published_primary_that_is_not_the_writable_server() -> None:
    from roleswap.status import health_problems, render_status, stale_published

    data: dict[str, Any] = {
        "cluster": "c", "servers": [], "writable": ["db2"], "replication_cycles": [],
        "published_primary": {"name": "db1", "host": "h", "port": 1},
        "journal_redis_behind": "Redis has swap a at seq 2 (phase running), the local file "
                                "swap a at seq 9 (phase done)",
    }
    assert stale_published(data) == "published primary db1 is not the writable server db2"
    problems = health_problems(data)
    assert "published primary db1 is not the writable server db2" in problems
    assert "the journal in Redis is behind the local copy (Redis lost writes)" in problems
    text = render_status(data, "x.toml")
    assert "WARNING: published primary db1 is not the writable server db2" in text
    assert "WARNING: the swap journal in Redis is behind this host's local copy" in text
    assert "run `roleswap recover` here" in text
    for quiet in ({**data, "writable": ["db1"]}, {**data, "writable": ["db1", "db2"]},
                  {**data, "swap_in_progress": {"swap_id": "x"}}, {**data, "published_primary": None}):
        assert stale_published(quiet) is None


class LockRedis:
    """SET NX + the compare-and-delete script: enough for ClusterLock."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def set(self, key: str, value: str, nx: bool = False, px: int = 0) -> bool:
        if nx and key in self.data:
            return False
        self.data[key] = value
        return True

    def eval(self, _script: str, _n: int, key: str, token: str, *_args: Any) -> int:
        if self.data.get(key) == token:
            del self.data[key]
            return 1
        return 0


def test_unlock_says_when_the_lock_was_lost_before_its_ttl() -> None:
    from types import SimpleNamespace

    from roleswap.coord.lock import ClusterLock
    from roleswap.swap.context import SwapOptions
    from roleswap.swap.steps_traffic import _release

    r = LockRedis()
    ctx = SimpleNamespace(opts=SwapOptions(), notes=[], config=None)
    lock = ClusterLock(r, "c", 120)  # type: ignore[arg-type]
    assert lock.acquire("s1") and lock.taken_at() is not None
    assert _release(ctx, lock) == "released" and ctx.notes == []  # type: ignore[arg-type]
    assert lock.acquire("s2")
    r.data.clear()  # a failover to a replica that never saw the lock
    said = _release(ctx, lock)  # type: ignore[arg-type]
    assert said == "was not held: lost before its TTL (Redis failover?)"
    assert "the cluster lock was gone before its TTL ran out: Redis lost it" in ctx.notes[0]
    assert "check `roleswap status`" in ctx.notes[0]


def test_sentinel_username_reaches_the_master_connections() -> None:
    cfg = parse_config(base(sentinels=SENTINELS[:1], master="m", username="roleswap", password="pw"))
    assert cfg.redis_sentinel is not None and cfg.redis_sentinel.username == "roleswap"
    client = rclient.connect(cfg)
    assert client is not None
    assert client.connection_pool.connection_kwargs["username"] == "roleswap"
    assert "roleswap:***@" in cfg.redis_url_masked and "pw" not in cfg.redis_url_masked.replace(
        "password", "")


def test_username_without_sentinels_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"redis\.username is only used with redis\.sentinels"):
        parse_config(base(url="redis://h:1/0", username="u"))
