"""Persistent SSH sessions (paramiko) for switch methods that act on hosts (vip).

One connection and ONE shell channel per host, opened during preflight and reused
for every command: ``exec_command`` costs ~100 ms here (a new channel, the login
shell reads its rc files), a line written to an open ``/bin/sh`` ~0.2 ms.

Protocol on the channel: each command runs as ``{ CMD\\n} </dev/null 2>&1`` followed
by ``printf '\\n%s %d\\n' MARK $?``.  MARK is random per session plus a sequence
number, so neither command output nor a late line of an earlier command can be
taken for the end of this one.  After a timeout or a lost connection the session
is closed (its state is unknown) and the command is NEVER re-sent: the caller
decides, because the command may have run.

Config (``[switch]`` defaults, overridable per ``[servers.<name>]``)::

    ssh_host, ssh_port (22), ssh_user (current user), ssh_key (file; else the agent),
    known_hosts (~/.ssh/known_hosts; strict), ssh_accept_new (false; labs only),
    sudo (false: prefix privileged commands with ``sudo -n``), remote_path,
    ssh_timeout (5 s)

Everything interpolated into a command goes through :func:`shlex.quote`, and the
values that name things (host, user, interface) are refused at config time if they
contain anything but plain characters.  Error messages name the host and the
config key, never key material.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import secrets
import select
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from roleswap.errors import ConfigError, StepError

if TYPE_CHECKING:
    from roleswap.config import Config

SAFE_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$")
SAFE_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./:+-]{1,1024}$")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOC = "README.md, 'The vip switch method'"  # where remedies point


class RemoteError(StepError):
    """An SSH connection or remote command failed.  ``sent``: the command may have
    reached the host (its outcome is unknown); False when it certainly did not."""

    sent = False


@dataclass(frozen=True)
class SshTarget:
    name: str  # the server name, for messages
    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    accept_new: bool = False
    sudo: bool = False
    path: str = DEFAULT_PATH
    timeout: float = 5.0

    @property
    def where(self) -> str:
        return f"{self.name} ({self.user}@{self.host}:{self.port})"


def setting(config: Config, server: str, key: str, default: Any = None) -> Any:
    """``[servers.<server>] key``, else ``[switch] key``, else ``default``."""
    extra = config.server(server).extra
    if key in extra:
        return extra[key]
    return config.switch.get(key, default)


def _key_of(config: Config, server: str, key: str) -> str:
    return f"servers.{server}.{key}" if key in config.server(server).extra else f"switch.{key}"


def ssh_target(config: Config, server: str) -> SshTarget:
    """The validated SSH settings for ``server`` (raises :class:`ConfigError`)."""
    src = config.source

    def bad(key: str, value: Any, fix: str) -> ConfigError:
        return ConfigError(f"{src}: {_key_of(config, server, key)} = {value!r} is not allowed", remedy=fix)

    host = setting(config, server, "ssh_host", config.server(server).host)
    if not isinstance(host, str) or not SAFE_HOST.match(host):
        raise bad("ssh_host", host, "use a DNS name or IP address: letters, digits, '.', '-', ':' only")
    port = setting(config, server, "ssh_port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise bad("ssh_port", port, "use an integer 1-65535, e.g. ssh_port = 22")
    user = setting(config, server, "ssh_user", getpass.getuser())
    if not isinstance(user, str) or not SAFE_USER.match(user):
        raise bad("ssh_user", user, "use a plain login name (letters, digits, '_', '.', '-')")
    key = setting(config, server, "ssh_key")
    if key is not None and (not isinstance(key, str) or not key):
        raise bad("ssh_key", key, 'a path to a private key file, e.g. ssh_key = "/etc/roleswap/id_ed25519"')
    known = setting(config, server, "known_hosts", "~/.ssh/known_hosts")
    if not isinstance(known, str) or not known:
        raise bad("known_hosts", known, 'a path, e.g. known_hosts = "/etc/roleswap/known_hosts"')
    flags = {}
    for k in ("ssh_accept_new", "sudo"):
        v = setting(config, server, k, False)
        if not isinstance(v, bool):
            raise bad(k, v, f"write {k} = true or false")
        flags[k] = v
    path = setting(config, server, "remote_path", DEFAULT_PATH)
    if not isinstance(path, str) or not SAFE_PATH.match(path):
        raise bad("remote_path", path, "a ':'-separated list of directories without spaces or quotes")
    timeout = setting(config, server, "ssh_timeout", 5.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 120:
        raise bad("ssh_timeout", timeout, "seconds, e.g. ssh_timeout = 5")
    return SshTarget(server, host, port, user, key, known, flags["ssh_accept_new"], flags["sudo"],
                     path, float(timeout))


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    ms: float


class RemoteShell:
    """One SSH connection + one long-lived ``/bin/sh`` channel to a host."""

    def __init__(self, target: SshTarget) -> None:
        self.t = target
        self._client: paramiko.SSHClient | None = None
        self._chan: paramiko.Channel | None = None
        self._mark = "__rs_" + secrets.token_hex(12)
        self._seq = 0
        self.connect_ms = 0.0

    # -- connection ---------------------------------------------------------------
    @property
    def connected(self) -> bool:
        c = self._chan
        if c is None or c.closed or c.exit_status_ready():
            return False
        transport = c.get_transport()
        return transport is not None and transport.is_active()

    def connect(self) -> None:
        if self.connected:
            return
        self.close()
        t0 = time.perf_counter()
        client = paramiko.SSHClient()
        known = Path(os.path.expanduser(self.t.known_hosts))
        if known.exists():
            client.load_host_keys(str(known))
        # strict unless the config explicitly accepts new keys (labs)
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if self.t.accept_new else paramiko.RejectPolicy())
        try:
            client.connect(self.t.host, self.t.port, username=self.t.user,
                           key_filename=os.path.expanduser(self.t.key_file) if self.t.key_file else None,
                           allow_agent=self.t.key_file is None, look_for_keys=False,
                           timeout=self.t.timeout, banner_timeout=self.t.timeout,
                           auth_timeout=self.t.timeout)
            if self.t.accept_new:
                with contextlib.suppress(OSError):
                    client.save_host_keys(str(known))
            transport = client.get_transport()
            assert transport is not None
            transport.set_keepalive(5)
            chan = transport.open_session(timeout=self.t.timeout)
            chan.set_combine_stderr(True)
            chan.exec_command("/bin/sh")  # the one exec; every command after is a line on it
        except Exception as e:  # paramiko raises many types; all mean "cannot log in"
            client.close()
            raise self._login_error(e) from None
        self._client, self._chan = client, chan
        self.run(f"export LC_ALL=C PATH={shlex.quote(self.t.path)}", privileged=False)
        self.connect_ms = (time.perf_counter() - t0) * 1000

    def _login_error(self, e: Exception) -> RemoteError:
        w = self.t.where
        if isinstance(e, paramiko.BadHostKeyException):
            return RemoteError(f"SSH to {w}: host key does not match {self.t.known_hosts}",
                               remedy="verify the host's key out of band, then fix known_hosts")
        if isinstance(e, paramiko.SSHException) and "not found in known_hosts" in str(e):
            return RemoteError(f"SSH to {w}: host key unknown (not in {self.t.known_hosts})",
                               remedy="add the host key to known_hosts (ssh-keyscan, verified), or "
                                      "set ssh_accept_new = true in a lab")
        if isinstance(e, paramiko.PasswordRequiredException):
            return RemoteError(f"SSH to {w}: the key file is encrypted",
                               remedy="load the key into ssh-agent and leave ssh_key unset")
        if isinstance(e, paramiko.AuthenticationException):
            return RemoteError(f"SSH login to {w} failed: authentication refused",
                               remedy="check ssh_user and that ssh_key's public key is in the "
                                      "host's authorized_keys")
        if isinstance(e, OSError | socket.timeout | paramiko.ssh_exception.NoValidConnectionsError):
            return RemoteError(f"SSH to {w}: cannot connect ({type(e).__name__}: "
                               f"{getattr(e, 'strerror', None) or 'unreachable'})",
                               remedy=f"check that {self.t.host} is up and sshd listens on port "
                                      f"{self.t.port} (ssh_host/ssh_port)")
        return RemoteError(f"SSH to {w} failed: {type(e).__name__}",
                           remedy="check the host's sshd log; try `ssh` by hand with the same settings")

    def close(self) -> None:
        for obj in (self._chan, self._client):
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()
        self._chan = self._client = None

    # -- commands -----------------------------------------------------------------
    def sudo(self, command: str) -> str:
        return f"sudo -n -- {command}" if self.t.sudo else command

    def run(self, command: str, timeout: float | None = None, privileged: bool = False) -> Result:
        """Run ``command`` (already quoted) and return its exit code and output.

        Reconnects first if the session is gone; never re-sends a command whose
        outcome is unknown.
        """
        if self._chan is None or not self.connected:
            self.connect()
        chan = self._chan
        assert chan is not None
        self._seq += 1
        mark = f"{self._mark}:{self._seq}"
        cmd = self.sudo(command) if privileged else command
        t0 = time.perf_counter()
        try:
            chan.sendall(f"{{ {cmd}\n}} </dev/null 2>&1; printf '\\n%s %d\\n' {mark} $?\n".encode())
        except (OSError, EOFError, paramiko.SSHException):
            self.close()
            raise RemoteError(f"SSH to {self.t.where}: connection lost before the command was sent",
                              remedy=f"check that {self.t.host} is up and sshd runs") from None
        buf = b""
        end = f"\n{mark} ".encode()
        deadline = t0 + (timeout or self.t.timeout)
        while True:
            i = buf.find(end)
            if i >= 0 and buf.find(b"\n", i + len(end)) >= 0:
                j = buf.find(b"\n", i + len(end))
                rc = int(buf[i + len(end):j])
                out = buf[:i].decode(errors="replace").rstrip("\n")
                return Result(rc, out, (time.perf_counter() - t0) * 1000)
            left = deadline - time.perf_counter()
            if left <= 0:
                self.close()  # the shell may still run it: the session is unusable
                err = RemoteError(f"SSH to {self.t.where}: `{command[:60]}` did not finish in "
                                  f"{timeout or self.t.timeout:g}s (outcome unknown)",
                                  remedy=f"log in to {self.t.host} and check by hand")
                err.sent = True
                raise err
            ready, _, _ = select.select([chan], [], [], min(left, 1.0))
            if ready or chan.recv_ready():
                data = chan.recv(65536)
                if not data:
                    self.close()
                    err = RemoteError(f"SSH to {self.t.where}: connection lost while running "
                                      f"`{command[:60]}` (outcome unknown)",
                                      remedy=f"check {self.t.host} by hand; see {DOC}")
                    err.sent = True
                    raise err
                buf += data

    def check(self, command: str, what: str, timeout: float | None = None,
              privileged: bool = False) -> str:
        """Run and require exit 0; the error names the host and the output's last line."""
        r = self.run(command, timeout, privileged)
        if r.rc != 0:
            tail = (r.out.strip().splitlines() or [""])[-1][:200]
            raise RemoteError(f"{what} on {self.t.where} failed (exit {r.rc}): {tail}",
                              remedy=f"see the message; with sudo = true check the sudoers rules in {DOC}"
                              if self.t.sudo else "see the message")
        return r.out

    def exec_once(self, command: str) -> Result:
        """One command on a fresh channel (the slow path; only for the benchmark)."""
        assert self._client is not None
        t0 = time.perf_counter()
        _, stdout, _ = self._client.exec_command(command, timeout=self.t.timeout)
        out = stdout.read().decode(errors="replace")
        rc = stdout.channel.recv_exit_status()
        return Result(rc, out, (time.perf_counter() - t0) * 1000)
