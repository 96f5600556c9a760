"""Every key the roleswap config file accepts: one table per section, in one place.

:func:`check_keys` refuses any other key (a typo must never be silently ignored:
``methd = "vip"`` would otherwise swap with the default method), naming the key,
its section and the nearest valid key.  The README's "Configuration keys" table is
rendered from these tables by :func:`markdown` (a unit test keeps the two equal).

The vip keys under ``servers.<name>`` override the ``[switch]`` key of the same
name for that server (read through ``ServerConfig.extra`` by roleswap.remote).
"""

from __future__ import annotations

import difflib
from typing import Any

from roleswap.errors import ConfigError

__all__ = ["SECTIONS", "check_keys", "markdown"]

_SSH = {
    "interface": "network interface that carries the VIP (default `eth0`)",
    "ssh_port": "SSH port (default 22)",
    "ssh_user": "SSH login (default: the local user name)",
    "ssh_key": "private key file (unset: ssh-agent)",
    "known_hosts": "known_hosts file, checked strictly (default `~/.ssh/known_hosts`)",
    "ssh_accept_new": "labs only: accept and store unknown host keys (default false)",
    "sudo": "prefix privileged commands with `sudo -n` (default false)",
    "remote_path": "PATH for remote commands",
    "ssh_timeout": "seconds for SSH connect and each command (default 5)",
}

# the keys of each [[switch.haproxy]] table (one per HAProxy instance)
HAPROXY_INSTANCE = {
    "name": "a name for messages (default `haproxy1`, `haproxy2`...)",
    "socket": "path of the runtime API's unix socket (`stats socket ... level admin`)",
    "address": "or the runtime API over TCP, `host:port` (exactly one of `socket` / `address`)",
    "ssh_host": "reach `socket` on this host over SSH with `socat` (the `[switch]` SSH keys)",
    "frontend": "`host:port` where the applications connect: verifies the switch (required)",
    "backend": "the backend that serves writes: one server entry per database server (required)",
    "timeout": "seconds for each runtime-API command (default 2)",
}

# section name -> {key: what it means}.  "" is the top level.
SECTIONS: dict[str, dict[str, str]] = {
    "": {
        "cluster": "names the lock, journal and published endpoint in Redis (required)",
        "mysql": "section: the control account",
        "replication": "section: the account replicas use",
        "redis": "section: coordination store",
        "intermission": "section: the apps' pause scope",
        "switch": "section: how traffic follows the new primary",
        "hooks": "section: commands for the hook method",
        "servers": "section: one `[servers.<name>]` table per server",
        "lab": "section: written by `roleswap lab up` (application account)",
        "journal": "section: local mirror of the swap journal",
        "maintain": "section: how `roleswap maintain` / `rolling` run their command",
    },
    "mysql": {
        "user": "control account (required)",
        "password": "its password (or `password_env` / `password_file`)",
        "password_env": "environment variable holding the password",
        "password_file": "file holding the password (relative to the config file)",
        "connect_timeout": "seconds (default 3)",
        "tls": "use TLS when the server offers it (default false)",
    },
    "replication": {
        "user": "replication account (required)",
        "password": "its password (or `password_env` / `password_file`)",
        "password_env": "environment variable holding the password",
        "password_file": "file holding the password",
    },
    "redis": {
        "url": "`redis://[:password@]host:port/db`, `rediss://` or `unix://` (or `url_env` / `url_file`)",
        "url_env": "environment variable holding the URL",
        "url_file": "file holding the URL",
        "sentinels": "Redis Sentinel instead of `url`: the sentinels, `[\"host:port\", ...]`",
        "master": "Sentinel: the master's name in the sentinels' `sentinel monitor` line",
        "db": "Sentinel: database number (default 0)",
        "username": "Sentinel: the master's ACL user name (default: none, the `default` user)",
        "password": "Sentinel: the master's password (or `password_env` / `password_file`)",
        "password_env": "Sentinel: environment variable holding the master's password",
        "password_file": "Sentinel: file holding the master's password",
        "sentinel_password": "Sentinel: the sentinels' own password, if they require one "
                             "(or `sentinel_password_env` / `sentinel_password_file`)",
        "sentinel_password_env": "Sentinel: environment variable holding the sentinels' password",
        "sentinel_password_file": "Sentinel: file holding the sentinels' password",
    },
    "intermission": {
        "scope": "the scope your apps' middleware uses (default: `cluster`)",
    },
    "switch": {
        "method": "`endpoint` (default), `hook`, `vip`, `haproxy` or `none`",
        "vip": "vip: the floating address with its prefix, e.g. `10.0.0.50/24`",
        "arping_count": "vip: background gratuitous ARPs after the first (0-20, default 3)",
        "verify_timeout": "vip, haproxy: seconds for a new connection through the VIP (each "
                          "HAProxy frontend) to reach `--to` (default 10)",
        "vip_port": "vip: MySQL port on the VIP (default: the port of `--to`)",
        **{k: f"vip: {v}" for k, v in _SSH.items()},
        "haproxy": "haproxy: one `[[switch.haproxy]]` table per HAProxy instance (keys below)",
    },
    "[switch.haproxy]": {k: f"haproxy: {v}" for k, v in HAPROXY_INSTANCE.items()},
    "hooks": {
        "before_fence": "hook: command run before the fence (failure rolls back)",
        "before_fence_undo": "hook: command run when `before_fence` is undone",
        "after_promote": "hook: command run after the promotion (failure rolls back)",
        "after_promote_undo": "hook: command run when `after_promote` is undone",
        "after_resume": "hook: command run after the point of no return",
        "timeout": "seconds each hook may run (default 30)",
    },
    "servers.<name>": {
        "host": "address roleswap and the replicas use (required)",
        "port": "default 3306",
        "socket": "unix socket roleswap connects through instead of TCP",
        "replication_host": "host other servers use in CHANGE MASTER (default: `host`)",
        "replication_port": "port other servers use in CHANGE MASTER (default: `port`)",
        "priority": "when no `--to` is given: higher is chosen first (default 0)",
        "candidate": "`false`: never chosen as the target when no `--to` is given (default true)",
        "ssl_ca": "CA file to verify the server's certificate (with `[mysql] tls = true`)",
        "ssh_host": "vip: SSH address of this server (default: `host`)",
        **{k: f"vip: this server's `[switch] {k}`" for k in _SSH},
        "haproxy_server": "haproxy: this server's entry in the HAProxy backend (default: its name)",
    },
    "lab": {
        "dir": "the lab's directory",
        "app_user": "application account (required in `[lab]`)",
        "app_password": "its password (or `app_password_env` / `app_password_file`)",
        "app_password_env": "environment variable holding the password",
        "app_password_file": "file holding the password",
        "database": "application database (default `app`)",
    },
    "journal": {
        "dir": "directory of the local journal mirror (default `~/.local/state/roleswap`)",
    },
    "maintain": {
        "run": "`local` (default: `sh -c CMD` here, with `ROLESWAP_SERVER`/`_HOST`/`_PORT`/"
               "`_CONFIG` set) or `ssh` (CMD on the server over the vip method's SSH settings)",
        "timeout": "seconds CMD may run (default 600)",
        "wait_timeout": "seconds to wait for the server to answer, replicate and catch up "
                        "afterwards (default 300)",
    },
}

# Keys that look right but are refused on purpose, with the reason.
_REFUSED = {
    ("hooks", "after_resume_undo"): "after_resume runs after the point of no return and is "
                                    "never undone; remove it",
}


def _label(section: str) -> str:
    return "the top level" if section == "" else f"[{section}]"


def _problem(section: str, label: str, key: str, is_table: bool) -> str:
    """One sentence about an unknown ``key`` in ``section`` (shown as ``label``)."""
    why = _REFUSED.get((section, key))
    if why:
        return f"{key!r} is not supported in {label}: {why}"
    known = list(SECTIONS[section])
    if section == "":
        what = f"unknown section [{key}]" if is_table else f"unknown key {key!r} at the top level"
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean [{close[0]}]?" if close and close[0] != "cluster" else (
            f"; did you mean {close[0]!r}?" if close else "")
        return what + hint
    # (the per-instance haproxy keys are not offered: most also exist as [servers.<name>] keys)
    elsewhere = [s for s, keys in SECTIONS.items() if s and s != "[switch.haproxy]" and key in keys]
    if elsewhere:
        return (f"unknown key {key!r} in {label}; it belongs in "
                + " or ".join(f"[{s}]" for s in elsewhere))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} in {label}; did you mean {close[0]!r}?"
    return f"unknown key {key!r} in {label}"


def check_keys(data: dict[str, Any], source: str) -> None:
    """Raise :class:`ConfigError` (exit 2) naming every key of ``data`` not in :data:`SECTIONS`.

    Sections that are not tables are left to the parser, which names them.
    """
    problems: list[tuple[str, str]] = []  # (message, section for the remedy)

    def scan(table: dict[str, Any], section: str, label: str) -> None:
        for key, value in table.items():
            if key not in SECTIONS[section]:
                problems.append((_problem(section, label, key, isinstance(value, dict)), section))

    scan(data, "", "the top level")
    for section in SECTIONS:
        if section in ("", "servers.<name>", "[switch.haproxy]"):
            continue
        table = data.get(section)
        if isinstance(table, dict):
            scan(table, section, f"[{section}]")
    instances = (data.get("switch") or {}).get("haproxy") if isinstance(data.get("switch"), dict) \
        else None
    if isinstance(instances, list):
        for i, table in enumerate(instances):
            if isinstance(table, dict):
                scan(table, "[switch.haproxy]", f"[[switch.haproxy]] #{i + 1}")
    servers = data.get("servers")
    if isinstance(servers, dict):
        for name, table in servers.items():
            if isinstance(table, dict):
                scan(table, "servers.<name>", f"[servers.{name}]")
    if not problems:
        return
    first_section = problems[0][1]
    valid = ", ".join(k for k in SECTIONS[first_section])
    raise ConfigError(
        f"{source}: " + "; ".join(p for p, _ in problems),
        remedy=f"fix or remove it; the keys of {_label(first_section)} are: {valid} "
               "(README: Configuration keys)",
    )


def markdown() -> str:
    """The README's table of every section and key (kept equal by a unit test)."""
    lines = ["| section | key | meaning |", "|---|---|---|"]
    for section, keys in SECTIONS.items():
        for key, doc in keys.items():
            if section == "" and doc.startswith("section:"):
                continue
            lines.append(f"| {'(top level)' if section == '' else f'`[{section}]`'} | `{key}` | {doc} |")
    return "\n".join(lines)
