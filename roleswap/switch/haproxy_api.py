"""HAProxy's runtime API (the ``stats socket``): commands, transport and parsing.

Each :meth:`RuntimeApi.send` opens ONE connection (unix socket, TCP, or ``socat`` on a
remote host through the SSH session of :mod:`roleswap.remote`), writes one line (several
commands may be joined with ``;``), reads until HAProxy closes (non-interactive mode),
and returns the text.  A connection that cannot be opened raises :class:`ApiError` with
``sent = False`` (the command certainly did not run); a failure after the line was
written has ``sent = True`` (it may have run).

Write commands print nothing on success, so :meth:`RuntimeApi.write` treats any text
in the answer as HAProxy's refusal (``No such server.``, ``Permission denied`` ...).

Server states come from ``show servers state <backend>`` (format version 1): the
operational state (0 stopped, 1 starting, 2 running, 3 stopping) and the admin flags
(0x01 forced maint, 0x02 inherited maint, 0x04 ``disabled`` in the config, 0x08/0x10
drain, 0x20 maint after a resolution failure).  :attr:`ServerState.state` words it as
the runtime API's own ``set server ... state`` takes it: ``maint``, ``drain`` or
``ready`` (plus ``down`` for a ready entry whose health check fails).
"""

from __future__ import annotations

import errno
import shlex
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roleswap.errors import StepError
from roleswap.switch.haproxy_config import SAFE_NAME, Instance

if TYPE_CHECKING:
    from roleswap.remote import RemoteShell

DOC = 'README.md, "The haproxy switch method"'
ADMF_MAINT = 0x01 | 0x02 | 0x20
ADMF_DRAIN = 0x08 | 0x10
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
STATES = ("ready", "drain", "maint")


class ApiError(StepError):
    """The runtime API of an instance could not be used.  ``sent``: the command may have
    reached HAProxy (its outcome is unknown); False when it certainly did not."""

    sent = False


@dataclass(frozen=True)
class ServerState:
    name: str
    address: str
    op: int
    admin: int

    @property
    def state(self) -> str:
        """``maint`` | ``drain`` | ``ready`` | ``down`` (ready, but its check fails)."""
        if self.admin & ADMF_MAINT:
            return "maint"
        if self.admin & ADMF_DRAIN:
            return "drain"
        return "ready" if self.op in (1, 2) else "down"


def cmd_show(backend: str) -> str:
    return f"show servers state {_name(backend)}"


def cmd_set(backend: str, server: str, state: str) -> str:
    assert state in STATES
    return f"set server {_name(backend)}/{_name(server)} state {state}"


def cmd_shutdown(backend: str, server: str) -> str:
    return f"shutdown sessions server {_name(backend)}/{_name(server)}"


def _name(value: str) -> str:
    # validated at config load; asserted again: a blank or ';' would start another command
    if not SAFE_NAME.match(value):
        raise ValueError(f"unsafe HAProxy name {value!r}")
    return value


def parse_servers_state(out: str, backend: str) -> dict[str, ServerState]:
    """``show servers state`` -> {server name: state}; raises ApiError for HAProxy's own
    error text (e.g. ``Can't find backend.``) or an unknown format."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != "1":
        text = " ".join(lines)[:200] or "(nothing)"
        raise ApiError(f"`show servers state {backend}` answered: {text}",
                       remedy=_refusal_fix(text, backend))
    found: dict[str, ServerState] = {}
    for ln in lines[1:]:
        if ln.startswith("#"):
            continue
        f = ln.split()
        if len(f) < 7 or f[1] != backend or not (f[5].isdigit() and f[6].isdigit()):
            raise ApiError(f"unexpected line in `show servers state {backend}`: {ln[:120]}",
                           remedy="roleswap reads format version 1 (HAProxy 1.6+); report this")
        found[f[3]] = ServerState(f[3], f[4], int(f[5]), int(f[6]))
    return found


def _refusal_fix(text: str, backend: str) -> str:
    low = text.lower()
    if "permission denied" in low:
        return ("the stats socket's level is too low: declare it with `level admin` "
                "(e.g. `stats socket /run/haproxy/admin.sock mode 660 level admin`)")
    if "find backend" in low or "no such backend" in low:
        return f"there is no backend {backend!r} in this HAProxy: fix `backend` in [[switch.haproxy]]"
    if "no such server" in low:
        return "fix servers.<name>.haproxy_server (default: the server's name) or the backend"
    return f"see HAProxy's answer; {DOC}"


class RuntimeApi:
    """The runtime API of one instance; ``shell`` (an SSH session) for ``ssh_host``."""

    def __init__(self, inst: Instance, shell: RemoteShell | None = None) -> None:
        self.inst = inst
        self.shell = shell
        self.last_ms = 0.0

    def send(self, line: str) -> str:
        """One connection, one line, the whole answer (see the module doc for ``sent``)."""
        t0 = time.perf_counter()
        try:
            return self._ssh(line) if self.inst.ssh is not None else self._local(line)
        finally:
            self.last_ms = (time.perf_counter() - t0) * 1000

    def write(self, *commands: str) -> None:
        """Run write commands in one connection; any answer text is a refusal."""
        out = self.send("; ".join(commands)).strip()
        if out:
            err = ApiError(f"HAProxy {self.inst.name} refused `{'; '.join(commands)}`: {out[:200]}",
                           remedy=_refusal_fix(out, self.inst.backend))
            err.sent = True
            raise err

    def servers(self) -> dict[str, ServerState]:
        return parse_servers_state(self.send(cmd_show(self.inst.backend)), self.inst.backend)

    def level(self) -> str:
        return self.send("show cli level").strip()

    # -- transports -----------------------------------------------------------------
    def _local(self, line: str) -> str:
        i = self.inst
        try:
            if i.socket is not None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(i.timeout)
                s.connect(i.socket)
            else:
                assert i.address is not None
                s = socket.create_connection(i.address, timeout=i.timeout)
        except OSError as e:
            raise self._connect_error(e) from None
        try:
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks).decode(errors="replace")
        except OSError as e:
            err = ApiError(f"HAProxy {i.name} ({i.api}): `{line[:60]}` got no complete answer "
                           f"({_reason(e)}; outcome unknown)",
                           remedy=f"check HAProxy there (`show servers state {i.backend}`); {DOC}")
            err.sent = True
            raise err from None
        finally:
            s.close()

    def _connect_error(self, e: OSError) -> ApiError:
        i = self.inst
        what = f"cannot connect to HAProxy {i.name}'s runtime API ({i.api}): {_reason(e)}"
        if e.errno == errno.ENOENT:
            fix = (f"no socket at {i.socket}: is HAProxy running, and does its config declare "
                   f"`stats socket {i.socket} level admin`?")
        elif e.errno in (errno.EACCES, errno.EPERM):
            fix = (f"this user may not open {i.socket}: run roleswap as a user in the socket's "
                   "group, or give the socket `mode 660 group <group>` in HAProxy's config")
        elif e.errno == errno.ECONNREFUSED:
            fix = ("nothing accepts connections there: is HAProxy running with that `stats socket`?"
                   if i.socket is None else
                   f"the socket exists but nobody listens: HAProxy is not running (stale {i.socket})")
        else:
            fix = "check that HAProxy runs and the address is reachable from here"
        return ApiError(what, remedy=fix + f"; [[switch.haproxy]] name = {i.name!r}")

    def _ssh(self, line: str) -> str:
        from roleswap.remote import RemoteError

        i, sh = self.inst, self.shell
        assert sh is not None and i.socket is not None
        # socat's address syntax splits on ':' and ','; the path was refused at config
        # load if it has either (SAFE_SOCKET), and the whole word is quoted for the shell
        cmd = (f"printf '%s\\n' {shlex.quote(line)} | "
               f"socat -t {i.timeout:g} stdio {shlex.quote('unix-connect:' + i.socket)}")
        try:
            r = sh.run(cmd, timeout=i.timeout + 3)
        except RemoteError as e:
            err = ApiError(f"HAProxy {i.name}: {e.message}", remedy=e.remedy)
            err.sent = e.sent
            raise err from None
        if r.rc != 0:
            tail = (r.out.strip().splitlines() or [""])[-1][:200]
            raise ApiError(f"cannot reach HAProxy {i.name}'s runtime API ({i.api}): {tail}",
                           remedy=f"on that host: is socat installed, HAProxy running, and "
                                  f"{i.socket} readable by the SSH user?")
        return r.out


def _reason(e: OSError) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    return e.strerror or type(e).__name__
