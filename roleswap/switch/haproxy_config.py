"""The haproxy method's settings, validated when the config is loaded (never at swap time).

Config::

    [switch]
    method = "haproxy"
    verify_timeout = 10                  # s: a NEW connection through each frontend must
                                         # reach --to by then (shared with vip)

    [[switch.haproxy]]                   # one table per HAProxy instance
    name = "lb1"                         # for messages (default: haproxy1, haproxy2 ...)
    socket = "/run/haproxy/admin.sock"   # the runtime API: a unix socket ...
    # address = "127.0.0.1:9999"         # ... or a TCP `stats socket` (exactly one of the two)
    # ssh_host = "lb1.internal"          # socket on that host, through SSH + socat (the SSH
                                         # keys of [switch]: ssh_user, ssh_key, known_hosts...)
    frontend = "127.0.0.1:3306"          # where the applications connect (the verification)
    backend = "mysql_primary"            # the backend that serves writes
    timeout = 2                          # s per runtime-API command (default 2)

    [servers.db1]
    haproxy_server = "db1"               # its server entry in the backend (default: the name)

Apart from :mod:`roleswap.switch.haproxy` so that :mod:`roleswap.config` can validate
without importing the engine (config -> haproxy_config -> remote, one way).  Names that
go into runtime-API commands (backend, server) are refused unless plain: the API splits
commands on blanks and ``;``.  Unknown keys in a ``[[switch.haproxy]]`` table are refused
with the rest of the file by :func:`roleswap.config_keys.check_keys`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from roleswap.errors import ConfigError
from roleswap.remote import SAFE_HOST, SshTarget, ssh_target

if TYPE_CHECKING:
    from roleswap.config import Config

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # HAProxy proxy / server names
SAFE_SOCKET = re.compile(r"^/[A-Za-z0-9_./+-]{1,200}$")
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Instance:
    """One HAProxy: where its runtime API is, its MySQL frontend and the writes backend."""

    name: str
    backend: str
    frontend: tuple[str, int]
    socket: str | None = None
    address: tuple[str, int] | None = None
    ssh: SshTarget | None = None
    timeout: float = 2.0

    @property
    def api(self) -> str:
        """Where the runtime API is, for messages (never a secret: paths and addresses)."""
        if self.ssh is not None:
            return f"unix socket {self.socket} on {self.ssh.where} (SSH)"
        if self.socket is not None:
            return f"unix socket {self.socket}"
        assert self.address is not None
        return f"TCP {self.address[0]}:{self.address[1]}"


@dataclass(frozen=True)
class HaproxySettings:
    instances: tuple[Instance, ...]
    servers: dict[str, str]  # roleswap server name -> its server entry in the backends
    verify_timeout: float = 10.0


def _hostport(src: str, key: str, value: Any) -> tuple[str, int]:
    if isinstance(value, str):
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if host and SAFE_HOST.match(host) and port.isdigit() and 0 < int(port) < 65536:
            return host, int(port)
    raise ConfigError(f"{src}: {key} = {value!r} is not host:port",
                      remedy=f'e.g. {key.rpartition(".")[2]} = "127.0.0.1:3306"')


def _instance(config: Config, i: int, t: Any) -> Instance:
    src, where = config.source, f"switch.haproxy[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{src}: {where} must be a table",
                          remedy='write [[switch.haproxy]] tables, one per HAProxy instance')
    name = t.get("name", f"haproxy{i + 1}")
    if not isinstance(name, str) or not _INSTANCE_NAME.match(name):
        raise ConfigError(f"{src}: {where}.name = {name!r} has unsupported characters",
                          remedy="use letters, digits, '-', '_' or '.' (at most 63)")
    backend = t.get("backend")
    if not isinstance(backend, str) or not SAFE_NAME.match(backend):
        raise ConfigError(f"{src}: {where}.backend = {backend!r} is not a backend name",
                          remedy='the name of the backend that serves writes, e.g. backend = '
                                 '"mysql_primary" (letters, digits, "_", ".", ":", "-")')
    if "frontend" not in t:
        raise ConfigError(f"{src}: missing {where}.frontend",
                          remedy='where the applications connect, e.g. frontend = "127.0.0.1:3306"')
    frontend = _hostport(src, f"{where}.frontend", t["frontend"])
    sock, addr = t.get("socket"), t.get("address")
    if (sock is None) == (addr is None):
        raise ConfigError(f"{src}: {where} needs exactly one of socket / address",
                          remedy='socket = "/run/haproxy/admin.sock" (unix) or address = '
                                 '"127.0.0.1:9999" (a TCP stats socket)')
    if sock is not None and (not isinstance(sock, str) or not SAFE_SOCKET.match(sock)):
        raise ConfigError(f"{src}: {where}.socket = {sock!r} is not an absolute socket path",
                          remedy='e.g. socket = "/run/haproxy/admin.sock" (no spaces, quotes, ",")')
    address = _hostport(src, f"{where}.address", addr) if addr is not None else None
    timeout = t.get("timeout", 2.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ConfigError(f"{src}: {where}.timeout must be seconds in (0, 60]", remedy="e.g. 2")
    ssh = None
    if "ssh_host" in t:
        if sock is None:
            raise ConfigError(f"{src}: {where}.ssh_host needs socket (a unix socket on that host)",
                              remedy="set socket to the admin socket's path there, or drop ssh_host "
                                     "and use address")
        ssh = _ssh_target(config, name, t["ssh_host"], where)
    return Instance(name, backend, frontend, sock, address, ssh, float(timeout))


def _ssh_target(config: Config, name: str, host: Any, where: str) -> SshTarget:
    """The ``[switch]`` SSH settings (validated as for a server) aimed at ``host``."""
    if not isinstance(host, str) or not SAFE_HOST.match(host):
        raise ConfigError(f"{config.source}: {where}.ssh_host = {host!r} is not a host name or "
                          "address", remedy="letters, digits, '.', '-', ':' only")
    # ssh_target reads [servers.<n>] then [switch]: ask it about a server of no settings
    plain = replace(next(iter(config.servers.values())), name=f"haproxy {name}", host=host,
                    socket=None, extra={})
    probe = replace(config, servers={**config.servers, plain.name: plain})
    return replace(ssh_target(probe, plain.name), sudo=False)


def haproxy_settings(config: Config) -> HaproxySettings:
    """Validate ``[switch]`` / ``[[switch.haproxy]]`` / ``servers.<n>.haproxy_server``."""
    src = config.source
    raw = config.switch.get("haproxy")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{src}: switch.method = \"haproxy\" needs at least one [[switch.haproxy]]",
                          remedy='add [[switch.haproxy]] with socket (or address), frontend and '
                                 'backend; see README, "The haproxy switch method"')
    instances = tuple(_instance(config, i, t) for i, t in enumerate(raw))
    names = [i.name for i in instances]
    if len(set(names)) != len(names):
        raise ConfigError(f"{src}: two [[switch.haproxy]] tables have the same name",
                          remedy="give each instance its own name")
    verify = config.switch.get("verify_timeout", 10.0)
    if not isinstance(verify, int | float) or isinstance(verify, bool) or not 0 < verify <= 120:
        raise ConfigError(f"{src}: switch.verify_timeout must be seconds in (0, 120]",
                          remedy="e.g. 10")
    servers: dict[str, str] = {}
    for name in config.servers:
        entry = config.server(name).extra.get("haproxy_server", name)
        if not isinstance(entry, str) or not SAFE_NAME.match(entry):
            raise ConfigError(f"{src}: servers.{name}.haproxy_server = {entry!r} is not a server "
                              "entry name", remedy="the name after `server` in the backend "
                              '(letters, digits, "_", ".", ":", "-")')
        servers[name] = entry
    if len(set(servers.values())) != len(servers):
        raise ConfigError(f"{src}: two servers map to the same haproxy_server entry",
                          remedy="each server needs its own entry in the backend")
    return HaproxySettings(instances, servers, float(verify))
