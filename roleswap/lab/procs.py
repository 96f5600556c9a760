"""Start, find and stop the lab's server processes by PID.

A process is only ever signalled after checking that its command line still
mentions the instance directory we gave it, so a recycled PID belonging to
someone else is never killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from roleswap.errors import LabError, MissingBinaryError

# Which Debian package provides each binary the lab needs.
PACKAGES = {
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb-admin": "mariadb-client",
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "arping": "iputils-arping",
    "ip": "iproute2",
    "haproxy": "haproxy",
}

_EXTRA_PATHS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def which(binary: str) -> str | None:
    """Find ``binary`` on PATH, also looking in sbin dirs a non-root PATH may lack."""
    found = shutil.which(binary)
    if found:
        return found
    for d in _EXTRA_PATHS:
        candidate = Path(d) / binary
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require(*binaries: str) -> dict[str, str]:
    """Resolve every binary or raise one error naming all missing ones and their packages."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for b in binaries:
        path = which(b)
        if path is None:
            missing.append(b)
        else:
            found[b] = path
    if missing:
        pkgs = sorted({PACKAGES.get(b, b) for b in missing})
        raise MissingBinaryError(
            f"missing program(s): {', '.join(missing)}",
            remedy=f"install them: sudo apt-get install -y {' '.join(pkgs)}",
        )
    return found


def free_port(host: str = "127.0.0.1", avoid: set[int] | None = None) -> int:
    """A TCP port that is free right now on ``host`` (the kernel picks it)."""
    avoid = avoid or set()
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise LabError("could not find a free TCP port", remedy="free some ports and retry")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn(argv: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a server detached from our session (it outlives us; we stop it by PID)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def tail_log(path: Path, lines: int = 3) -> str:
    """The last ``lines`` lines of a log, joined on one line (for error messages)."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


SERVER_PROGRAMS = ("mariadbd", "mysqld", "redis-server", "redis-sentinel", "sshd", "haproxy")


def servers_under(directory: Path) -> list[int]:
    """PIDs of server processes (:data:`SERVER_PROGRAMS`, run directly, through a loader
    or ``ip netns exec``) whose command line names a path inside ``directory``.

    For teardown after a crash: a process spawned just before its starter died may not
    be recorded anywhere; its arguments (``--defaults-file=DIR/db1/my.cnf``, ``--dir
    DIR/redis``, ``-f DIR/db1/ssh/sshd_config``) still say whose it is.
    """
    inside = str(directory).rstrip("/") + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(Path(a).name in SERVER_PROGRAMS for a in argv) and any(
                a.startswith(inside) or a.partition("=")[2].startswith(inside) for a in argv):
            found.append(int(entry.name))
    return found


def alive(pid: int, marker: str | None = None) -> bool:
    """True if ``pid`` runs (and, given ``marker``, its command line contains it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _proc_state(pid) == "Z" and not _threads_running(pid):
        return False
    return marker is None or marker in cmdline(pid)


def _threads_running(pid: int) -> bool:
    """True if a thread of ``pid`` other than its first still runs.  A multi-threaded
    process (HAProxy's two threads here) whose main thread has exited reads as a zombie
    while the other threads still serve its sockets: it is not gone yet."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    except OSError:
        return False
    return any(_stat_state(Path(f"/proc/{pid}/task/{tid}/stat")) not in ("", "Z", "X")
               for tid in tids)


def _proc_state(pid: int) -> str:
    return _stat_state(Path(f"/proc/{pid}/stat"))


def _stat_state(stat_file: Path) -> str:
    """The state letter of a /proc stat file ("" if it is gone)."""
    try:
        stat = stat_file.read_text()
    except OSError:
        return ""
    # the state follows the ")" that ends the command name
    return stat.rsplit(")", 1)[-1].split()[0]


def stop(pid: int, marker: str, timeout: float = 10.0) -> bool:
    """SIGTERM then (after ``timeout``) SIGKILL ``pid`` if it is still our process.

    Returns True if a process was stopped.  Reaps it if it is our child.
    """
    if not alive(pid, marker):
        _reap(pid)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a SIGSTOPped process (fault tests) must run to die
    except ProcessLookupError:
        _reap(pid)
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            return True
        time.sleep(0.02)
    kill(pid, marker, wait=2.0)
    return True


def kill(pid: int, marker: str, wait: float = 10.0) -> bool:
    """SIGKILL ``pid`` if it is still our process; return once it is gone (reaped if it
    is our child) or after ``wait`` seconds.  Returns True if a process was killed."""
    if not alive(pid, marker):
        _reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):  # gone meanwhile: reaped below
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            break
        time.sleep(0.01)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass
