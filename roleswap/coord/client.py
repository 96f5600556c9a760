"""roleswap's one way to make a Redis client from the config's ``[redis]`` section.

``[redis] url`` (``url_env`` / ``url_file``) names one Redis; ``[redis] sentinels`` +
``master`` names the master that Redis Sentinel reports (see :mod:`intermission.client`,
which builds both kinds, so roleswap and the apps' middleware follow a failover alike).

Contract: :func:`connect` contacts nothing (the first command does), returns None when
the config names no Redis, and gives every socket -- the master's and the sentinels'
-- the same timeout, so no call can hang.  :func:`where` is safe to print (passwords
masked; a Sentinel config names its master and every sentinel, and the config key).
"""

from __future__ import annotations

import redis
from redis.sentinel import SentinelConnectionPool

from intermission import client as iclient
from roleswap.config import Config

__all__ = ["TIMEOUT", "connect", "drop_connections", "master_address", "master_now", "refusal",
           "where"]

TIMEOUT = 2.0  # seconds, for connects and for every reply


def connect(config: Config, *, timeout: float = TIMEOUT) -> redis.Redis | None:
    """A client for the config's Redis, or None without one."""
    if config.redis_sentinel is not None:
        return iclient.connect(config.redis_sentinel, socket_timeout=timeout,
                               socket_connect_timeout=timeout)
    if config.redis_url is None:
        return None
    return iclient.connect(config.redis_url.reveal(), socket_timeout=timeout,
                           socket_connect_timeout=timeout)


def config_key(config: Config) -> str:
    """Which config key names the Redis, for remedies: ``[redis] url`` or ``sentinels``."""
    return "[redis] sentinels/master" if config.redis_sentinel is not None else "[redis] url"


def where(config: Config) -> str:
    """``<masked url or master via sentinels> ([redis] ... in <config file>)``."""
    return f"{config.redis_url_masked} ({config_key(config)} in {config.source})"


def _hostport(addr: object) -> str | None:
    if not isinstance(addr, tuple | list) or len(addr) != 2:
        return None
    host = addr[0].decode() if isinstance(addr[0], bytes) else str(addr[0])
    return f"{host}:{int(addr[1])}"


def master_address(client: redis.Redis | None) -> str | None:
    """``host:port`` of the master this Sentinel client's connections go to (the one it
    last learned from the sentinels), or None: a plain Redis, or no connection made yet.
    Asks nobody."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return None
    return _hostport(pool.proxy.master_address)


def master_now(client: redis.Redis | None) -> str | None:
    """``host:port`` of the master as the sentinels report it NOW (one sentinel round
    trip), or None for a plain Redis.  If it moved, the client's idle connections are
    dropped, so its next command reaches the new master -- without this, a connection
    to a master that a ``SENTINEL FAILOVER`` demoted keeps working (on the wrong side)
    until the sentinels turn it into a replica, about 10 s later.  Raises
    ``redis.RedisError`` (``MasterNotFoundError``) when no sentinel names a master."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return None
    return _hostport(pool.get_master_address())


def drop_connections(client: redis.Redis) -> None:
    """Close every connection of ``client``'s pool, idle or not: each reconnects on its
    next use, to the master the sentinels name then.  After a failover the pool can hold
    connections to both sides (one opened after the failover learned the new master and
    dropped only the idle ones; a busy one came back to the pool still on the old master)."""
    client.connection_pool.disconnect(inuse_connections=True)


def refusal(e: redis.RedisError) -> tuple[str, str] | None:
    """(what, what to do) when Redis answered but refused, for messages; None for other
    errors (raw error texts can carry a URL, so only known refusals are described)."""
    if isinstance(e, redis.ResponseError) and str(e).startswith("NOREPLICAS"):
        return ("the Redis master refuses writes while no replica is in sync (its "
                "min-replicas-to-write)", "repair the Redis replica, then retry")
    if isinstance(e, redis.ReadOnlyError):
        return ("Redis answered as a read-only replica (a failover under way?)",
                "retry in a few seconds")
    if isinstance(e, redis.AuthenticationError):
        return "Redis refused the password", "check the [redis] password settings"
    return None
