"""The page a host agent shares with the app processes of its host (see
:mod:`intermission.hostagent`): one file in a directory both can open, mapped by each.

Why a shared page: with hundreds of app processes per host, each waking to acknowledge a
pause costs the pause window ~0.7 ms of CPU per process.  Here only the agent wakes.  It
sets the host's pause flag, and each process reads that flag on its own next request (a
memory read); the agent reads every process's in-flight count from the page instead of
waiting for acks.

Layout (native int64 words; the file is only ever shared on one host):

* header (``HEADER_WORDS``): magic, agent pid, agent beat, paused, deadline, pause
  generation, payload length and seqlock, slot count, the pause token (64 bytes);
* the resume payload (JSON, at most :data:`intermission.protocol.MAX_PAYLOAD_BYTES`);
* ``SLOTS`` slots of ``SLOT_WORDS`` words, one per attached process: pid, its start
  time (so a reused pid is not taken for it), in flight, held, waiting for a poke.

Memory order.  A process publishes its in-flight count, then reads the flag; the agent
sets the flag, then reads the counts.  That store-then-load pattern needs a full barrier
on both sides, which a request must not pay for: the agent calls ``membarrier(2)``
(``MEMBARRIER_CMD_GLOBAL_EXPEDITED``, ~1 µs here) between its store and its loads,
which orders the processes' side too (they register for it when they attach).  So a
request either sees the flag, or is counted by the agent's scan.  Without membarrier
(old kernels, a seccomp profile that refuses it) host mode is refused, and processes
talk to Redis themselves.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import mmap
import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from intermission import protocol as p

MAGIC = 0x494E544D48535431  # "INTMHST1": bump the last digit on any layout change
HEADER_WORDS = 32
SLOTS = 1024
SLOT_WORDS = 8
PAYLOAD_OFFSET = HEADER_WORDS * 8
PAYLOAD_BYTES = p.MAX_PAYLOAD_BYTES
SLOTS_OFFSET = PAYLOAD_OFFSET + PAYLOAD_BYTES
SIZE = SLOTS_OFFSET + SLOTS * SLOT_WORDS * 8

# header words
H_MAGIC, H_AGENT_PID, H_AGENT_BEAT, H_PAUSED, H_DEADLINE, H_GEN = 0, 1, 2, 3, 4, 5
H_PAYLOAD_LEN, H_PAYLOAD_SEQ, H_SLOTS, H_TOKEN_LEN, H_PIDNS = 6, 7, 8, 9, 10
TOKEN_OFFSET = 16 * 8  # 64 bytes: words 16..23
TOKEN_BYTES = 64
# slot words
S_PID, S_START, S_IN_FLIGHT, S_HELD, S_WAITING = 0, 1, 2, 3, 4

# seconds without an agent beat: the agent is gone.  Its Redis heartbeat (every 0.5 s, TTL
# 3 s) outlives it by >= 2.5 s; the processes notice within STALE_AGENT + IDLE_CHECK and
# write their own heartbeats first (see hostlink)
STALE_AGENT = 1.5
BEAT_EVERY = 0.1  # seconds between the agent's beats

# x86-64 only: its stores become visible in program order and its loads are not reordered
# with each other, so only the store-then-load pair needs membarrier.  Weaker models
# (aarch64) would need acquire/release on the page's words, which Python cannot express.
_MEMBARRIER_NR = {"x86_64": 324, "amd64": 324}
_CMD_QUERY, _CMD_GLOBAL_EXPEDITED, _CMD_REGISTER_GLOBAL_EXPEDITED = 0, 2, 4
_libc: ctypes.CDLL | None = None


class HostModeUnavailable(RuntimeError):
    """Host mode cannot work here; the message says why."""


def _syscall(cmd: int) -> int:
    global _libc
    nr = _MEMBARRIER_NR.get(platform.machine().lower())
    if nr is None:
        raise HostModeUnavailable(f"host mode needs x86-64's memory order; this is "
                                  f"{platform.machine()}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    r = int(_libc.syscall(nr, cmd, 0, 0))
    if r < 0:
        err = ctypes.get_errno()
        raise HostModeUnavailable(f"membarrier(2) command {cmd} failed: {os.strerror(err)}")
    return r


def register_barrier() -> None:
    """Called by each attaching process (once): lets the agent's barrier reach it."""
    supported = _syscall(_CMD_QUERY)
    if not supported & _CMD_GLOBAL_EXPEDITED:
        raise HostModeUnavailable("this kernel's membarrier(2) lacks GLOBAL_EXPEDITED "
                                  "(Linux >= 4.16 has it)")
    _syscall(_CMD_REGISTER_GLOBAL_EXPEDITED)


def barrier() -> None:
    """A full memory barrier on every CPU running a registered process."""
    _syscall(_CMD_GLOBAL_EXPEDITED)


SOCKET_PATH_MAX = 107  # sun_path, less its terminating NUL


def page_path(directory: str | os.PathLike[str], scope: str) -> Path:
    path = Path(directory) / f"{p.validate_scope(scope)}.host"
    longest = slot_socket(directory, scope, SLOTS - 1)
    if len(os.fsencode(longest)) > SOCKET_PATH_MAX:
        raise HostModeUnavailable(
            f"the host agent directory {directory} is too long for the sockets in it "
            f"({longest} is over {SOCKET_PATH_MAX} bytes); use a shorter one, e.g. /run/intermission")
    return path


def agent_socket(directory: str | os.PathLike[str], scope: str) -> str:
    return str(Path(directory) / f"{scope}.agent.sock")


def slot_socket(directory: str | os.PathLike[str], scope: str, slot: int) -> str:
    return str(Path(directory) / f"{scope}.{slot}.sock")


def agent_lock(directory: str | os.PathLike[str], scope: str) -> int:
    """Hold ``<scope>.agent.lock`` in ``directory`` for the caller's lifetime (returns its
    fd); raises if another agent for this scope holds it."""
    path = Path(directory) / f"{p.validate_scope(scope)}.agent.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise HostModeUnavailable(f"another host agent (pid {other}) runs for scope {scope!r} "
                                  f"in {directory}; stop it first, or use another --dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def pid_namespace() -> int:
    """This process's PID namespace (its inode): pids in the page mean something only to
    processes of the same one."""
    return os.stat("/proc/self/ns/pid").st_ino


def process_start(pid: int) -> int:
    """The start time of ``pid`` in clock ticks since boot (0 if it does not exist, or
    has exited and waits to be reaped: a zombie runs no request)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # the command name (field 2) may hold spaces and ')': split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return 0
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    return pid > 0 and process_start(pid) == start


@dataclass(frozen=True)
class PauseView:
    paused: bool
    deadline_ns: int
    generation: int
    token: str | None


class Page:
    """One mapped page.  ``create`` (the agent) or ``attach`` (an app process)."""

    def __init__(self, path: Path, fd: int, mm: mmap.mmap) -> None:
        self.path = path
        self._fd = fd
        self._mm = mm
        self.words = memoryview(mm).cast("q")
        self._slot_base = SLOTS_OFFSET // 8

    @classmethod
    def create(cls, directory: str | os.PathLike[str], scope: str) -> Page:
        """Open (or make) the page for ``scope``; an existing page of a previous agent keeps
        its slots and its pause (the processes are still attached and holding)."""
        path = page_path(directory, scope)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
        try:
            with _locked(fd):
                size = os.fstat(fd).st_size
                if size not in (0, SIZE):
                    raise HostModeUnavailable(
                        f"{path} is {size} bytes, not an intermission host page of this "
                        f"version ({SIZE}); remove it and restart the agent")
                if size == 0:
                    os.ftruncate(fd, SIZE)
                mm = mmap.mmap(fd, SIZE)
                page = cls(path, fd, mm)
                w = page.words
                if w[H_MAGIC] not in (0, MAGIC):
                    raise HostModeUnavailable(f"{path} is not an intermission host page")
                if w[H_MAGIC] == 0:
                    w[H_SLOTS] = SLOTS
                    w[H_PAYLOAD_LEN] = -1
                    w[H_MAGIC] = MAGIC
                if w[H_PAYLOAD_SEQ] % 2:  # a previous agent died writing a payload
                    w[H_PAYLOAD_LEN] = -1
                    w[H_PAYLOAD_SEQ] += 1
                w[H_PIDNS] = pid_namespace()
        except BaseException:
            os.close(fd)
            raise
        return page

    @classmethod
    def attach(cls, directory: str | os.PathLike[str], scope: str) -> Page:
        path = page_path(directory, scope)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise HostModeUnavailable(f"no host agent page at {path} ({exc.strerror})") from None
        try:
            if os.fstat(fd).st_size != SIZE:
                raise HostModeUnavailable(f"{path} is not a host page of this version")
            mm = mmap.mmap(fd, SIZE)
        except BaseException:
            os.close(fd)
            raise
        page = cls(path, fd, mm)
        if page.words[H_MAGIC] != MAGIC:
            page.close()
            raise HostModeUnavailable(f"{path} is not an intermission host page")
        return page

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.words.release()
            self._mm.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    # ------------------------------------------------------------ slots

    def slot_index(self, slot: int, field: int) -> int:
        return self._slot_base + slot * SLOT_WORDS + field

    def claim_slot(self, pid: int) -> int:
        """Take a free slot (or one of a dead process) for ``pid``; -1 if all are taken."""
        start = process_start(pid)
        w = self.words
        with _locked(self._fd):
            for slot in range(SLOTS):
                i = self.slot_index(slot, 0)
                owner = w[i + S_PID]
                if owner == 0 or not alive(owner, w[i + S_START]):
                    for f in range(SLOT_WORDS):
                        w[i + f] = 0
                    w[i + S_START] = start
                    w[i + S_PID] = pid
                    return slot
        return -1

    def release_slot(self, slot: int, pid: int) -> None:
        w = self.words
        i = self.slot_index(slot, 0)
        with _locked(self._fd):
            if w[i + S_PID] == pid:
                for f in range(SLOT_WORDS):
                    w[i + f] = 0

    def slots_in_use(self) -> list[int]:
        w, base = self.words, self._slot_base
        return [s for s in range(SLOTS) if w[base + s * SLOT_WORDS + S_PID]]

    # ------------------------------------------------------------ pause state

    def pause_view(self) -> PauseView:
        w = self.words
        # the generation first: the agent writes it last, so the words read after it are
        # at least as new (a view can only be behind, and the process then catches up again)
        gen = w[H_GEN]
        paused, deadline = bool(w[H_PAUSED]), w[H_DEADLINE]
        n = max(0, min(TOKEN_BYTES, w[H_TOKEN_LEN]))
        token = bytes(self._mm[TOKEN_OFFSET:TOKEN_OFFSET + n]).decode("ascii", "replace")
        return PauseView(paused, deadline, gen, token or None)

    def set_pause(self, token: str, deadline_ns: int) -> None:
        """Agent: the host is paused until ``deadline_ns`` (CLOCK_MONOTONIC).  A new pause
        (not a renewal of the current one) is a new generation: processes catch up."""
        w = self.words
        new = not w[H_PAUSED] or self.pause_view().token != token
        raw = token.encode("ascii")[:TOKEN_BYTES]
        self._mm[TOKEN_OFFSET:TOKEN_OFFSET + len(raw)] = raw
        w[H_TOKEN_LEN] = len(raw)
        w[H_DEADLINE] = deadline_ns
        w[H_PAUSED] = 1
        if new:  # last: a process that sees the new generation sees the pause's words too
            w[H_GEN] += 1

    def clear_pause(self, payload: bytes | None) -> None:
        """Agent: the pause ended; ``payload`` is the resume's (JSON), if any."""
        w = self.words
        w[H_PAYLOAD_SEQ] = w[H_PAYLOAD_SEQ] | 1  # odd: being written
        if payload is None:
            w[H_PAYLOAD_LEN] = -1
        else:
            data = payload[:PAYLOAD_BYTES]
            self._mm[PAYLOAD_OFFSET:PAYLOAD_OFFSET + len(data)] = data
            w[H_PAYLOAD_LEN] = len(data)
        w[H_PAYLOAD_SEQ] += 1
        w[H_PAUSED] = 0
        w[H_GEN] += 1  # last (x86-64 keeps stores in order): the payload is there before it

    def payload(self) -> bytes | None:
        """The last resume's payload (None: it had none).  Retries while the agent writes
        one (microseconds); gives up after ~0.1 s (the agent died mid-write: no payload)."""
        w = self.words
        for attempt in range(1000):
            seq = w[H_PAYLOAD_SEQ]
            n = w[H_PAYLOAD_LEN]
            data = None if n < 0 else bytes(self._mm[PAYLOAD_OFFSET:PAYLOAD_OFFSET + n])
            if seq % 2 == 0 and w[H_PAYLOAD_SEQ] == seq:
                return data
            if attempt > 10:
                time.sleep(0.0001)
        return None

    def beat(self, pid: int) -> None:
        self.words[H_AGENT_PID] = pid
        self.words[H_AGENT_BEAT] = time.monotonic_ns()

    def agent_age(self) -> float:
        """Seconds since the agent's last beat (inf: never)."""
        beat = self.words[H_AGENT_BEAT]
        return (time.monotonic_ns() - beat) / 1e9 if beat else float("inf")


@contextlib.contextmanager
def _locked(fd: int):  # type: ignore[no-untyped-def]
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def poke(sock: socket.socket, path: str) -> bool:
    """One datagram to ``path`` (a process's or the agent's socket); False if nobody is
    there any more.  Never blocks."""
    try:
        sock.sendto(b".", path)
    except (BlockingIOError, FileNotFoundError, ConnectionRefusedError, OSError):
        return False
    return True


def bind(path: str) -> socket.socket:
    """A non-blocking datagram socket bound at ``path`` (a stale file is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setblocking(False)
    return s
