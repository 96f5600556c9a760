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

from intermission import client as iclient
from roleswap.config import Config

__all__ = ["TIMEOUT", "connect", "where"]

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
