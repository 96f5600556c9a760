"""What every lab (loopback or hosts) provisions: template datadir, accounts, roleswap.toml."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from roleswap.lab.flavors import Server
from roleswap.lab.node import Accounts, Engine
from roleswap.lab.state import Lab


def ensure_template(engine: Engine, srv: Server, say: Callable[[str], None]) -> Path:
    """The engine's template datadir for ``srv``, saying so when it is made (once per version)."""
    t0 = time.monotonic()
    template = engine.ensure_template(srv)
    if time.monotonic() - t0 > 0.3:
        say(f"initialised a {srv.flavor.name} template datadir in {time.monotonic() - t0:.1f}s "
            f"(once per version): {template}")
    return template


def new_accounts() -> Accounts:
    """The lab's three accounts with fresh random passwords."""
    return Accounts(control_user="roleswap", control_password=_password(),
                    repl_user="repl", repl_password=_password(),
                    app_user="app", app_password=_password())


def _password() -> str:
    return secrets.token_urlsafe(18)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(lab: Lab, acc: Accounts) -> Path:
    redis = lab.node("redis")
    lines = [
        "# roleswap config for the local lab (written by `roleswap lab up`).",
        "# Roles are read from the servers; this file only says where they are.",
        f"# servers: {lab.server}",
        f"cluster = {_toml_str(lab.cluster)}",
        "",
        "[mysql]  # the control account roleswap uses",
        f"user = {_toml_str(acc.control_user)}",
        f"password = {_toml_str(acc.control_password)}",
        "connect_timeout = 2",
        "",
        "[replication]  # the account replicas use to connect to their source",
        f"user = {_toml_str(acc.repl_user)}",
        f"password = {_toml_str(acc.repl_password)}",
        "",
        "[redis]",
        f"url = {_toml_str(f'redis://{redis.host}:{redis.port}/0')}",
        "",
        "[intermission]",
        f"scope = {_toml_str(lab.cluster)}",
        "",
        "[switch]",
        'method = "endpoint"',
        "",
        "[maintain]  # where `roleswap maintain`/`rolling` run CMD (ROLESWAP_SERVER etc. set)",
        'run = "local"',
        "",
        "[journal]  # local mirror of the swap journal (the main copy is in Redis)",
        f"dir = {_toml_str(str(lab.dir / 'journal'))}",
        "",
        "[lab]",
        f"dir = {_toml_str(str(lab.dir))}",
        f"app_user = {_toml_str(acc.app_user)}",
        f"app_password = {_toml_str(acc.app_password)}",
        f"database = {_toml_str(acc.database)}",
        "",
    ]
    for n in lab.nodes:
        if n.is_db:
            lines += [f"[servers.{n.name}]", f"host = {_toml_str(n.host)}", f"port = {n.port}",
                      f"socket = {_toml_str(str(Path(n.dir) / 'mysqld.sock'))}", ""]
    path = lab.config_path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    return path
