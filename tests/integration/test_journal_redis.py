"""The journal's Redis copy on a real Redis: a write does not wait for Redis's reply (its
reply is read with the next write, or when the outcome is asked for), every write still
lands, and a Redis restart or outage between writes costs no write it can make."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import redis

from roleswap.coord.journal import Journal
from roleswap.coord.keys import journal_key
from roleswap.lab.redis_server import RedisServer, start_redis


def _seq(client: redis.Redis, cluster: str) -> int | None:
    raw = client.get(journal_key(cluster))
    return None if raw is None else int(json.loads(raw)["seq"])


def test_a_write_does_not_wait_for_redis_and_lands(fresh_redis: RedisServer, tmp_path: Path) -> None:
    writer = redis.Redis.from_url(fresh_redis.url, socket_timeout=5)
    other = redis.Redis.from_url(fresh_redis.url, socket_timeout=5)
    j = Journal(writer, "c", tmp_path)
    j.begin("s1", "db1", "db2", "gtid", ["lock", "pause"], {})
    assert j.redis_error is None and _seq(other, "c") == 1
    # Redis holds every write command for a while: a write that waited for its reply
    # would not return before the pause ends, and then Redis would already have it.
    other.execute_command("CLIENT", "PAUSE", 3000, "WRITE")
    done = threading.Event()
    t = threading.Thread(target=lambda: (j.step("lock", "running"), done.set()), daemon=True)
    t.start()
    assert done.wait(2.5), "the journal write waited for Redis's reply"
    assert _seq(other, "c") == 1  # sent, not applied yet (reads still answer)
    assert j.redis_error is None  # waits for the reply: Redis applied it
    assert _seq(other, "c") == 2
    j.step("lock", "done", 1.0)
    j.close()  # reads the last reply
    assert _seq(other, "c") == 3
    assert json.loads(j.path.read_text().splitlines()[-1])["seq"] == 3


def test_a_redis_restart_between_writes_costs_no_write(fresh_redis: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(fresh_redis.url, socket_timeout=2)
    j = Journal(client, "c", tmp_path)
    j.begin("s1", "db1", "db2", "gtid", ["lock"], {})
    assert j.redis_error is None
    fresh_redis.stop()
    back = start_redis(fresh_redis.dir, port=fresh_redis.port)  # empty: no persistence kept
    try:
        j.step("lock", "running")  # sent on a connection the restart closed
        assert j.redis_error is None  # written again the plain way, on a new connection
        assert _seq(client, "c") == 2
        back.stop()
        j.step("lock", "done", 1.0)  # Redis is down: the error is reported, the file has it
        assert j.redis_error == "ConnectionError"
        assert json.loads(j.path.read_text().splitlines()[-1])["seq"] == 3
    finally:
        back.stop()
        j.close()
