"""The roleswap config (TOML) of a test cluster whose servers roleswap cannot start itself.

The process backend uses the file ``roleswap lab up`` writes; the docker backend renders
its own with :func:`render_config` from a :class:`ConfigSpec`.  The result is a complete
config for ``roleswap -c PATH ...`` and for :func:`roleswap.config.load_config`, which
the unit tests round-trip it through.  :func:`write_private` writes it with mode 0600:
it holds the cluster's passwords.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServerEntry:
    """One ``[servers.<name>]`` table.

    ``host``/``port`` is where roleswap (and the test process) reaches the server, e.g.
    a published loopback port; ``replication_host``/``replication_port`` is where the
    other servers reach it in CHANGE MASTER (inside a container network: the network
    alias and 3306).  ``None`` leaves the key out (roleswap then uses host/port).
    """

    name: str
    host: str
    port: int
    replication_host: str | None = None
    replication_port: int | None = None


@dataclass(frozen=True)
class ConfigSpec:
    """Everything :func:`render_config` needs; passwords are excluded from the repr."""

    cluster: str
    control_user: str
    control_password: str = field(repr=False)
    repl_user: str
    repl_password: str = field(repr=False)
    redis_url: str = field(repr=False)  # may carry a password
    app_user: str
    app_password: str = field(repr=False)
    database: str
    journal_dir: Path
    servers: Sequence[ServerEntry]
    comment: str = ""


def _s(value: str) -> str:
    """A TOML basic string: a JSON string is one (quotes, backslashes, control characters)."""
    return json.dumps(value)


def render_config(spec: ConfigSpec) -> str:
    """The TOML text of ``spec`` (endpoint switch: no VIP or SSH in a test cluster)."""
    lines = [
        "# roleswap config of a test cluster (written by roleswap.testing).",
        "# Roles are read from the servers; this file only says where they are.",
    ]
    if spec.comment:
        lines.append(f"# {spec.comment}")
    lines += [
        f"cluster = {_s(spec.cluster)}",
        "",
        "[mysql]  # the control account roleswap uses",
        f"user = {_s(spec.control_user)}",
        f"password = {_s(spec.control_password)}",
        "connect_timeout = 2",
        "",
        "[replication]  # the account replicas use to connect to their source",
        f"user = {_s(spec.repl_user)}",
        f"password = {_s(spec.repl_password)}",
        "",
        "[redis]",
        f"url = {_s(spec.redis_url)}",
        "",
        "[intermission]",
        f"scope = {_s(spec.cluster)}",
        "",
        "[switch]",
        'method = "endpoint"',
        "",
        "[journal]  # local mirror of the swap journal (the main copy is in Redis)",
        f"dir = {_s(str(spec.journal_dir))}",
        "",
        "[lab]  # the application account (cannot write through read_only)",
        f"app_user = {_s(spec.app_user)}",
        f"app_password = {_s(spec.app_password)}",
        f"database = {_s(spec.database)}",
        "",
    ]
    for s in spec.servers:
        lines += [f"[servers.{s.name}]", f"host = {_s(s.host)}", f"port = {int(s.port)}"]
        if s.replication_host is not None:
            lines.append(f"replication_host = {_s(s.replication_host)}")
        if s.replication_port is not None:
            lines.append(f"replication_port = {int(s.replication_port)}")
        lines.append("")
    return "\n".join(lines)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600 from the first byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT: set it
    return path
