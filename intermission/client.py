"""Redis clients for intermission: one factory for a plain Redis and for Redis Sentinel.

An address is written as a URL everywhere intermission takes one (``redis_url=``,
``INTERMISSION_REDIS_URL``, ``intermission --redis``, ``Controller(url, ...)``):

* ``redis://[[user]:password@]host:port/db``, ``rediss://...``, ``unix:///path?db=0``:
  one Redis server (redis-py's own URL form);
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/DB]``: the
  master named ``MASTER`` as the listed sentinels report it.  The user and password are
  the master's; ``?sentinel_password=...`` (optional) authenticates to the sentinels.
  The client asks the sentinels for the master's address on every new connection, and
  a connection to a demoted master is dropped (redis-py's ``SentinelConnectionPool``),
  so after a failover the next call (or the one after) reaches the new master.

Contract: :func:`parse` raises ``ValueError`` whose text never contains a password;
:func:`describe` is safe to print or log (passwords are ``***``; a Sentinel address
names its master and every sentinel); :func:`connect` never contacts Redis (the first
command does) and applies the socket timeouts to the master's connections and to the
sentinels alike, so no call can hang on either.  A sentinel that does not answer is not
retried: the next one is asked at once (the master's connections keep redis-py's retries,
or the ``retry=`` given, which ride over a failover's few seconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from intermission import protocol as p

__all__ = ["SENTINEL_SCHEME", "RedisAddress", "SentinelAddress", "connect", "describe",
           "parse"]

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
_MASTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,253}$")
EXAMPLE = "redis+sentinel://:PASSWORD@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0"


@dataclass(frozen=True)
class SentinelAddress:
    """The master ``master`` as ``sentinels`` report it.  Passwords are not in the repr."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.sentinels:
            raise ValueError(f"a Sentinel address needs at least one sentinel (e.g. {EXAMPLE})")
        for host, port in self.sentinels:
            if not isinstance(host, str) or not _HOST_RE.match(host):
                raise ValueError(f"sentinel host {host!r} is not a host name or address")
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"sentinel port {port!r} of {host} must be 1-65535")
        if not isinstance(self.master, str) or not _MASTER_RE.match(self.master):
            raise ValueError(f"master name {self.master!r} must be letters, digits, '_', '.' "
                             "or '-' (the name in the sentinels' `sentinel monitor` line)")
        if isinstance(self.db, bool) or not isinstance(self.db, int) or not 0 <= self.db <= 1000:
            raise ValueError(f"db must be an integer 0-1000; got {self.db!r}")

    def describe(self) -> str:
        who = f"{self.username}:***@" if self.password and self.username else (
            ":***@" if self.password else "")
        hosts = ",".join(f"{h}:{port}" for h, port in self.sentinels)
        auth = " (sentinel password set)" if self.sentinel_password else ""
        return (f"master {self.master!r} via sentinels {hosts} "
                f"({SENTINEL_SCHEME}://{who}{hosts}/{self.master}/{self.db}){auth}")


RedisAddress = str | SentinelAddress


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"sentinel {text!r} must be host:port (e.g. 10.0.0.1:26379)")
    return host.strip("[]"), int(port)


def _parse_sentinel(url: str) -> SentinelAddress:
    rest = url[len(SENTINEL_SCHEME) + 3:]
    rest, _, query = rest.partition("?")
    if "#" in query:
        raise ValueError("a Sentinel URL takes no #fragment")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    sentinels = tuple(_hostport(h) for h in hosts.split(",") if h)
    parts = [x for x in path.split("/") if x]
    if not parts or len(parts) > 2:
        raise ValueError(f"a Sentinel URL is {SENTINEL_SCHEME}://[:password@]host:port[,host:port"
                         f"...]/MASTER[/DB], e.g. {EXAMPLE}")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"the db after the master name must be a number; got {parts[1]!r}")
        db = int(parts[1])
    options = parse_qs(query, keep_blank_values=True) if query else {}
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise ValueError(f"unknown Sentinel URL option(s) {', '.join(unknown)}; "
                         "the only one is sentinel_password")
    sp = options.get("sentinel_password", [None])[-1]
    return SentinelAddress(sentinels, unquote(parts[0]), db, username, password, sp or None)


def parse(url: object) -> RedisAddress:
    """A plain URL (returned as is) or a :class:`SentinelAddress`; ``ValueError`` (naming
    the accepted forms, password masked) for anything else."""
    if isinstance(url, SentinelAddress):
        return url
    if not isinstance(url, str):
        raise ValueError(f"a Redis address must be a URL string; got {type(url).__name__}")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == SENTINEL_SCHEME:
        try:
            return _parse_sentinel(url)
        except ValueError as exc:
            raise ValueError(f"{p.mask_url(url)!r}: {exc}") from None
    if scheme in PLAIN_SCHEMES:
        return url
    raise ValueError(f"must be a redis://, rediss://, unix:// or {SENTINEL_SCHEME}:// URL; "
                     f"got {p.mask_url(url)!r}")


def describe(address: RedisAddress) -> str:
    """Safe to print: the masked URL, or the master and its sentinels."""
    if isinstance(address, SentinelAddress):
        return address.describe()
    return p.mask_url(address)


def connect(address: RedisAddress, *, socket_timeout: float,
            socket_connect_timeout: float | None = None, **kwargs: Any) -> redis.Redis:
    """A client for ``address``.  ``kwargs`` go to the client of the (master) Redis
    (e.g. ``retry=``, ``socket_keepalive=``).  Contacts nothing yet."""
    connect_timeout = socket_timeout if socket_connect_timeout is None else socket_connect_timeout
    if isinstance(address, str):
        address = parse(address)
    if isinstance(address, str):
        return redis.Redis.from_url(address, socket_timeout=socket_timeout,
                                    socket_connect_timeout=connect_timeout, **kwargs)
    # no retries per sentinel: an unreachable one is skipped for the next at once (redis-py's
    # default would retry it 10 times, seconds per sentinel before the next is asked)
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": socket_timeout,
                                       "socket_connect_timeout": connect_timeout,
                                       "retry": Retry(NoBackoff(), 0)}
    if address.sentinel_password:
        sentinel_kwargs["password"] = address.sentinel_password
    sentinel = Sentinel(list(address.sentinels), sentinel_kwargs=sentinel_kwargs)
    client: redis.Redis = sentinel.master_for(
        address.master, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
        db=address.db, username=address.username, password=address.password, **kwargs)
    return client
