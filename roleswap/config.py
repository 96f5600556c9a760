"""The roleswap config file (TOML) as frozen dataclasses.

Only *addresses and credentials* come from the config; roles (who is primary)
are always read fresh from the servers.  Every validation failure raises
:class:`ConfigError` naming the key and how to fix it; a key that is not in
:data:`roleswap.config_keys.SECTIONS` is refused (naming the nearest valid key).
Secrets are wrapped in :class:`Secret` so they never show up in a repr, a log
line or an exception.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intermission.client import SentinelAddress
from intermission.client import describe as describe_address
from intermission.protocol import mask_url
from roleswap.config_keys import check_keys
from roleswap.errors import ConfigError

__all__ = ["Config", "Credentials", "LabConfig", "Secret", "ServerConfig", "load_config",
           "mask_url", "parse_config"]

CONFIG_ENV = "ROLESWAP_CONFIG"
SWITCH_METHODS = ("endpoint", "hook", "vip", "haproxy", "none")
# Names end up in Redis keys, file names and (quoted) shell commands: keep them boring.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Secret:
    """A string that never reveals itself in repr/str (use :meth:`reveal`)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Credentials:
    user: str
    password: Secret


@dataclass(frozen=True)
class ServerConfig:
    name: str
    host: str
    port: int = 3306
    socket: str | None = None
    # switch-method specific settings per server (e.g. ssh, interface for vip)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LabConfig:
    app_user: str
    app_password: Secret
    database: str
    dir: str | None = None


@dataclass(frozen=True)
class MaintainConfig:
    """``[maintain]``: where `roleswap maintain` runs its command, and how long it waits."""

    run: str = "local"  # "local" | "ssh"
    timeout: float = 600.0
    wait_timeout: float = 300.0


@dataclass(frozen=True)
class Config:
    cluster: str
    mysql: Credentials
    replication: Credentials
    redis_url: Secret | None
    scope: str
    switch_method: str
    servers: dict[str, ServerConfig]
    switch: dict[str, Any] = field(default_factory=dict, compare=False)
    hooks: dict[str, str] = field(default_factory=dict, compare=False)
    lab: LabConfig | None = None
    tls: bool = False
    connect_timeout: float = 3.0
    journal_dir: str | None = None
    maintain: MaintainConfig = field(default_factory=MaintainConfig)
    source: str = ""
    # [redis] sentinels + master: Redis Sentinel instead of a url (exactly one of the two)
    redis_sentinel: SentinelAddress | None = field(default=None, compare=False)

    def server(self, name: str) -> ServerConfig:
        try:
            return self.servers[name]
        except KeyError:
            known = ", ".join(sorted(self.servers)) or "(none)"
            raise ConfigError(
                f"unknown server {name!r}",
                remedy=f"use one of: {known} (the [servers.<name>] sections of {self.source})",
            ) from None

    @property
    def has_redis(self) -> bool:
        """Whether ``[redis]`` names a Redis (a url or a Sentinel master)."""
        return self.redis_url is not None or self.redis_sentinel is not None

    @property
    def redis_url_masked(self) -> str:
        """The Redis for messages: the masked url, or the master and its sentinels."""
        if self.redis_sentinel is not None:
            return describe_address(self.redis_sentinel)
        return mask_url(self.redis_url.reveal()) if self.redis_url else "(none)"


def find_config_path(explicit: str | None) -> Path:
    path = explicit or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(
            "no config file given",
            remedy=f"pass -c FILE before the command (or set {CONFIG_ENV}); "
            "`roleswap lab up` writes one to .lab/roleswap.toml",
        )
    return Path(path)


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read config {p}: {e.strerror}", remedy="check the path given with -c"
        ) from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not valid TOML: {e}", remedy="fix the syntax") from None
    return parse_config(data, source=str(p), base_dir=p.parent)


def parse_config(data: dict[str, Any], source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate ``data`` (a parsed TOML document) into a :class:`Config`.

    Raises :class:`ConfigError` (exit 2) for an unknown key anywhere, a missing or
    ill-typed value, or an unusable name, host or URL; nothing is contacted.
    """
    check_keys(data, source)
    r = _Reader(source, base_dir or Path.cwd())
    cluster = r.name(data, "cluster")
    mysql = r.credentials(r.table(data, "mysql"), "mysql")
    replication = r.credentials(r.table(data, "replication"), "replication")
    redis_t = r.table(data, "redis", required=False)
    redis_url = r.secret(redis_t, "redis", "url", required=False)
    redis_sentinel = r.sentinel(redis_t, has_url=redis_url is not None)
    if redis_url is not None and not redis_url.reveal().startswith(_REDIS_SCHEMES):
        raise ConfigError(f"{source}: redis.url must start with "
                          f"{', '.join(_REDIS_SCHEMES)}",
                          remedy='e.g. url = "redis://:password@redis.internal:6379/0"; for '
                                 'Redis Sentinel: sentinels = ["host:26379", ...] and master = '
                                 '"NAME" instead of url')
    inter = r.table(data, "intermission", required=False)
    scope = r.name(inter, "scope", prefix="intermission", default=cluster)
    switch_t = dict(r.table(data, "switch", required=False))
    method = r.string(switch_t, "method", prefix="switch", default="endpoint")
    if method not in SWITCH_METHODS:
        raise ConfigError(
            f"{source}: switch.method = {method!r} is not supported",
            remedy=f"use one of: {', '.join(SWITCH_METHODS)}",
        )
    servers_t = r.table(data, "servers")
    if not servers_t:
        raise ConfigError(f"{source}: [servers] is empty", remedy="add [servers.<name>] sections")
    servers: dict[str, ServerConfig] = {}
    for name, st in servers_t.items():
        if not isinstance(st, dict):
            raise ConfigError(f"{source}: servers.{name} must be a table", remedy=f"write [servers.{name}]")
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"{source}: server name {name!r} has unsupported characters",
                remedy="use letters, digits, '-', '_' or '.'",
            )
        servers[name] = r.server(name, st)
    hooks_t = r.table(data, "hooks", required=False)
    for k, v in hooks_t.items():
        if k == "timeout":
            if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{source}: hooks.timeout must be a positive number of seconds",
                                  remedy="e.g. timeout = 30")
        elif not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{source}: hooks.{k} must be a command string",
                              remedy=f'e.g. {k} = "/usr/local/bin/my-hook --flag"')
    hooks = {str(k): str(v) for k, v in hooks_t.items()}
    lab_t = r.table(data, "lab", required=False)
    lab = None
    if lab_t:
        lab = LabConfig(
            app_user=r.string(lab_t, "app_user", prefix="lab"),
            app_password=r.secret(lab_t, "lab", "app_password") or Secret(""),
            database=r.string(lab_t, "database", prefix="lab", default="app"),
            dir=lab_t.get("dir"),
        )
    mysql_t = r.table(data, "mysql")
    timeout = mysql_t.get("connect_timeout", 3.0)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"{source}: mysql.connect_timeout must be a positive number", remedy="e.g. 3")
    journal_t = r.table(data, "journal", required=False)
    journal_dir = journal_t.get("dir")
    if journal_dir is not None:
        if not isinstance(journal_dir, str) or not journal_dir:
            raise ConfigError(f"{source}: journal.dir must be a path string",
                              remedy='e.g. "/var/lib/roleswap"')
        if not Path(journal_dir).is_absolute() and base_dir is not None:
            journal_dir = str(base_dir / journal_dir)
    maintain_t = r.table(data, "maintain", required=False)
    run_where = maintain_t.get("run", "local")
    if run_where not in ("local", "ssh"):
        raise ConfigError(f"{source}: maintain.run = {run_where!r} must be \"local\" or \"ssh\"",
                          remedy='local: sh -c CMD on this machine; ssh: on the server (vip SSH keys)')
    waits = {}
    for key, default in (("timeout", 600.0), ("wait_timeout", 300.0)):
        v = maintain_t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 86400:
            raise ConfigError(f"{source}: maintain.{key} must be seconds in (0, 86400]",
                              remedy=f"e.g. {key} = {default:g}")
        waits[key] = float(v)
    config = Config(
        cluster=cluster,
        mysql=mysql,
        replication=replication,
        redis_url=redis_url,
        scope=scope,
        switch_method=method,
        servers=servers,
        switch=switch_t,
        hooks=hooks,
        lab=lab,
        tls=bool(mysql_t.get("tls", False)),
        connect_timeout=float(timeout),
        journal_dir=journal_dir,
        maintain=MaintainConfig(run_where, waits["timeout"], waits["wait_timeout"]),
        source=source,
        redis_sentinel=redis_sentinel,
    )
    if method == "vip":
        # the vip method puts hosts and interface names into shell commands: refuse bad ones now
        from roleswap.switch.vip_config import vip_settings

        vip_settings(config)
    if method == "haproxy":
        # runtime-API names and paths go into commands: refuse bad ones now
        from roleswap.switch.haproxy_config import haproxy_settings

        haproxy_settings(config)
    return config


class _Reader:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def table(self, data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            if required:
                raise ConfigError(f"{self.source}: missing [{key}] section", remedy=f"add a [{key}] table")
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.source}: {key} must be a table", remedy=f"write it as [{key}]")
        return value

    def string(self, t: dict[str, Any], key: str, prefix: str = "", default: str | None = None) -> str:
        full = f"{prefix}.{key}" if prefix else key
        value = t.get(key, default)
        if value is None:
            raise ConfigError(f"{self.source}: missing {full}", remedy=f"set {full} = \"...\"")
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{self.source}: {full} must be a non-empty string", remedy=f"set {full} = \"...\""
            )
        return value

    def name(self, t: dict[str, Any], key: str, prefix: str = "", default: str | None = None) -> str:
        value = self.string(t, key, prefix, default)
        if not _NAME_RE.match(value):
            full = f"{prefix}.{key}" if prefix else key
            raise ConfigError(
                f"{self.source}: {full} = {value!r} has unsupported characters",
                remedy="use letters, digits, '-', '_' or '.' (at most 63)",
            )
        return value

    def secret(self, t: dict[str, Any], section: str, key: str, required: bool = True) -> Secret | None:
        """``key``, ``key_env`` (environment variable) or ``key_file`` (file contents)."""
        if key in t:
            value = t[key]
            if not isinstance(value, str):
                raise ConfigError(f"{self.source}: {section}.{key} must be a string", remedy="quote it")
            return Secret(value)
        if f"{key}_env" in t:
            var = str(t[f"{key}_env"])
            if var not in os.environ:
                raise ConfigError(
                    f"{self.source}: {section}.{key}_env names ${var}, which is not set",
                    remedy=f"export {var}=... before running roleswap",
                )
            return Secret(os.environ[var])
        if f"{key}_file" in t:
            fp = Path(str(t[f"{key}_file"]))
            if not fp.is_absolute():
                fp = self.base_dir / fp
            try:
                return Secret(fp.read_text().rstrip("\n"))
            except OSError as e:
                raise ConfigError(
                    f"{self.source}: cannot read {section}.{key}_file {fp}: {e.strerror}",
                    remedy="check the path and its permissions",
                ) from None
        if required:
            raise ConfigError(
                f"{self.source}: missing {section}.{key}",
                remedy=f"set {section}.{key}, {section}.{key}_env or {section}.{key}_file",
            )
        return None

    def sentinel(self, t: dict[str, Any], has_url: bool) -> SentinelAddress | None:
        """``[redis] sentinels`` + ``master`` (+ ``db``, passwords), or None without
        ``sentinels``.  The Sentinel-only keys without ``sentinels`` are refused, and so
        is a url next to ``sentinels``: exactly one form."""
        example = 'sentinels = ["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"]'
        only = [k for k in t if k not in ("url", "url_env", "url_file", "sentinels")]
        if "sentinels" not in t:
            if only:
                raise ConfigError(
                    f"{self.source}: redis.{only[0]} is only used with redis.sentinels",
                    remedy=f"for Redis Sentinel add {example} and master = \"mymaster\"; "
                           "with a url, put the password into the url")
            return None
        if has_url:
            raise ConfigError(f"{self.source}: [redis] has both url and sentinels",
                              remedy="keep one: url for one Redis, sentinels + master for "
                                     "Redis Sentinel")
        raw = t["sentinels"]
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
            raise ConfigError(f"{self.source}: redis.sentinels must be a non-empty list of "
                              "\"host:port\" strings", remedy=f"e.g. {example}")
        addrs: list[tuple[str, int]] = []
        for item in raw:
            host, sep, port = item.rpartition(":")
            if not sep or not _HOST_RE.match(host) or not port.isdigit() \
                    or not 0 < int(port) < 65536:
                raise ConfigError(f"{self.source}: redis.sentinels entry {item!r} is not "
                                  "host:port", remedy=f"e.g. {example}")
            addrs.append((host, int(port)))
        master = self.string(t, "master", prefix="redis")
        db = t.get("db", 0)
        if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db <= 1000:
            raise ConfigError(f"{self.source}: redis.db must be an integer 0-1000",
                              remedy="e.g. db = 0")
        pw = self.secret(t, "redis", "password", required=False)
        spw = self.secret(t, "redis", "sentinel_password", required=False)
        username = self.string(t, "username", prefix="redis") if "username" in t else None
        try:
            return SentinelAddress(tuple(addrs), master, db, username,
                                   pw.reveal() if pw else None, spw.reveal() if spw else None)
        except ValueError as e:
            raise ConfigError(f"{self.source}: [redis]: {e}",
                              remedy='e.g. master = "mymaster"') from None

    def credentials(self, t: dict[str, Any], section: str) -> Credentials:
        user = self.string(t, "user", prefix=section)
        password = self.secret(t, section, "password")
        return Credentials(user, password or Secret(""))

    def server(self, name: str, t: dict[str, Any]) -> ServerConfig:
        host = self.string(t, "host", prefix=f"servers.{name}")
        if not _HOST_RE.match(host):
            raise ConfigError(
                f"{self.source}: servers.{name}.host = {host!r} is not a host name or address",
                remedy="use a DNS name or an IP address (no spaces or shell characters)",
            )
        port = t.get("port", 3306)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(
                f"{self.source}: servers.{name}.port must be an integer 1-65535",
                remedy="e.g. port = 3306",
            )
        for key in ("socket", "replication_host", "ssl_ca"):
            value = t.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{self.source}: servers.{name}.{key} must be a non-empty string",
                                  remedy=f'quote it: {key} = "..."')
        rh = t.get("replication_host")
        if rh is not None and not _HOST_RE.match(rh):
            raise ConfigError(
                f"{self.source}: servers.{name}.replication_host = {rh!r} is not a host name or address",
                remedy="use a DNS name or an IP address (no spaces or shell characters)",
            )
        rport = t.get("replication_port")
        if rport is not None and (isinstance(rport, bool) or not isinstance(rport, int)
                                  or not 0 < rport < 65536):
            raise ConfigError(
                f"{self.source}: servers.{name}.replication_port must be an integer 1-65535",
                remedy="the port other servers use in CHANGE MASTER, e.g. 3306 inside a container "
                       "network whose published port is `port`",
            )
        prio = t.get("priority", 0)
        if isinstance(prio, bool) or not isinstance(prio, int) or not -1000 <= prio <= 1000:
            raise ConfigError(f"{self.source}: servers.{name}.priority must be an integer -1000..1000",
                              remedy="higher is preferred when roleswap chooses the target, e.g. 10")
        cand = t.get("candidate", True)
        if not isinstance(cand, bool):
            raise ConfigError(f"{self.source}: servers.{name}.candidate must be true or false",
                              remedy="candidate = false: never chosen as the target by roleswap")
        sock = t.get("socket")
        extra = {k: v for k, v in t.items() if k not in ("host", "port", "socket")}
        return ServerConfig(name=name, host=host, port=port, socket=sock, extra=extra)
