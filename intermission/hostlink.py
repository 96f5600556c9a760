"""An app process in host mode: its gate follows the host agent's page, not Redis.

The middleware's option ``host_agent=<directory>`` (or env ``INTERMISSION_HOST_AGENT``)
makes the process attach to the page of ``intermission host-agent --dir <directory>``
(see :mod:`intermission.hostshm`).  Then:

* a request publishes the process's in-flight count in its slot, then reads the page's
  generation (every pause and every resume makes a new one).  If the process has not
  caught up with it, the request takes itself back out and is held (the gate pauses
  locally) until the link thread has caught up: still paused, keep holding; ended, run
  ``on_resume`` with the payload, then release.  So a process that held nothing during a
  pause still runs ``on_resume`` before its next request; ``on_pause`` runs only where a
  request arrived during the pause;
* the process never wakes for a pause.  The agent counts it as drained from its slot;
* a link thread per process sleeps on a datagram socket.  While requests are held it
  wakes on the agent's poke at resume (or every ``RECHECK`` seconds, or at the pause's
  deadline), reads the page, and releases them (``on_resume`` first, with the payload);
* a request that finishes while the host is paused and leaves 0 in flight pokes the
  agent, so the drain is seen at once.

If the page is missing, membarrier(2) is unavailable or the agent stops beating (for
``STALE_AGENT`` seconds), the process detaches and talks to Redis itself, as a process
without ``host_agent`` does (a warning says why).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from intermission import hostshm as hs

if TYPE_CHECKING:
    from intermission.agent import Agent
    from intermission.state import Gate

log = logging.getLogger("intermission")

ENV_DIR = "INTERMISSION_HOST_AGENT"
RECHECK = 0.05  # seconds: while holding, re-read the page at least this often
# seconds: while not holding, check that the agent still beats.  STALE_AGENT + this stays
# under what the agent's Redis heartbeat outlives it by (>= 2.5 s), so this process's own
# heartbeat is in Redis before the dead agent's expires: a drain never sees the host's
# requests vanish.
IDLE_CHECK = 0.25
FIRST_BEAT_WAIT = 1.0  # seconds a fallback waits for its Redis agent's first heartbeat
REATTACH_EVERY = 5.0  # seconds between tries to attach again while on a Redis agent
_registered = False


class HostLink:
    """Connects one :class:`Gate` to the host agent's page.  Has the interface the
    middlewares use of :class:`intermission.agent.Agent` (``start``, ``stop``,
    ``started``, ``after_fork``)."""

    def __init__(self, gate: Gate, *, directory: str, scope: str,
                 fallback: Callable[[], Agent]) -> None:
        self.gate = gate
        self.directory = directory
        self.scope = scope
        self._make_fallback = fallback
        self.fallback: Agent | None = None
        self.started = False
        self.attached = False
        self.slot = -1
        self.page: hs.Page | None = None
        self._sock: socket.socket | None = None
        self._agent_path = ""
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        # the page's generation this process has caught up with: its requests pass only
        # while the page still shows it (a pause began or ended since: catch up first)
        self.seen_gen = -1
        self.held_gen: int | None = None  # the paused generation this process holds for
        _LINKS.add(self)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._start_lock:
            if self.started:
                return
            try:
                self._attach()
            except hs.HostModeUnavailable as exc:
                log.warning("intermission: host mode unavailable for scope %r: %s; this "
                            "process talks to Redis itself", self.scope, exc)
                self._use_fallback()
            self.started = True

    def _attach(self) -> None:
        global _registered
        page = hs.Page.attach(self.directory, self.scope)
        try:
            if page.words[hs.H_PIDNS] != hs.pid_namespace():
                raise hs.HostModeUnavailable(
                    f"the host agent of {page.path} runs in another PID namespace (another "
                    "container?): it could not tell whether this process is alive")
            age = page.agent_age()
            if age > hs.STALE_AGENT:
                raise hs.HostModeUnavailable(
                    f"the host agent of {page.path} is not running (last beat "
                    f"{'never' if age == float('inf') else f'{age:.0f}s ago'})")
            if not _registered:
                hs.register_barrier()
                _registered = True
            pid = os.getpid()
            slot = page.claim_slot(pid)
            if slot < 0:
                raise hs.HostModeUnavailable(f"all {hs.SLOTS} slots of {page.path} are taken")
            try:
                sock = hs.bind(hs.slot_socket(self.directory, self.scope, slot))
            except OSError as exc:
                page.release_slot(slot, pid)
                raise hs.HostModeUnavailable(f"cannot bind its socket: {exc}") from None
        except BaseException:
            page.close()
            raise
        self.page, self.slot, self._sock, self.pid = page, slot, sock, pid
        self._agent_path = hs.agent_socket(self.directory, self.scope)
        base = page.slot_index(slot, 0)
        self.i_in_flight = base + hs.S_IN_FLIGHT
        self.i_held = base + hs.S_HELD
        self.i_waiting = base + hs.S_WAITING
        self.words = page.words
        view = page.pause_view()
        # attached while a pause is on: the first request waits for its end (-1: never seen)
        self.seen_gen = -1 if view.paused else view.generation
        self.held_gen = None
        self._stop = threading.Event()
        gate = self.gate
        with gate.lock:
            gate.shared = self
            self.publish(gate)  # requests already running (a hand-over from a Redis agent)
            gate.synced = True  # the page is the state: no Redis answer to wait for
            gate._update_open()
        self.attached = True
        threading.Thread(target=self._run, name="intermission-hostlink", daemon=True).start()

    def _use_fallback(self) -> None:
        if self.fallback is None:
            self.fallback = self._make_fallback()
        self.fallback.start()
        threading.Thread(target=self._reattach, args=(self._stop,), daemon=True,
                         name="intermission-hostlink-reattach").start()

    def _reattach(self, stop: threading.Event) -> None:
        """While on a Redis agent: try the host agent again every ``REATTACH_EVERY`` s (it
        was restarted, or started after this process), never while requests are held.
        Attached, with this process's counts in its slot, the Redis agent stops (its
        heartbeat goes)."""
        while not stop.wait(REATTACH_EVERY):
            if not self.started or self.attached or self.gate.paused:
                continue
            try:
                with self._start_lock:
                    if not self.started or self.attached:
                        continue
                    self._attach()
            except hs.HostModeUnavailable:
                continue
            except Exception:  # never let this kill the process's way back
                log.exception("intermission: re-attaching to the host agent failed")
                continue
            log.warning("intermission: attached to the host agent of scope %r again; this "
                        "process no longer talks to Redis itself", self.scope)
            if self.fallback is not None:
                self.fallback.stop()
            return

    def _fall_back(self) -> None:
        """The agent stopped beating (link thread).  No gap: new requests wait for the Redis
        agent's first answer (as at startup), and this process's count stays in the page
        until the Redis agent's own heartbeat carries it."""
        gate = self.gate
        with gate.lock:
            gate.shared = None
            gate.synced = False
            gate._update_open()
        self._use_fallback()
        fallback = self.fallback
        deadline = time.monotonic() + FIRST_BEAT_WAIT
        while fallback is not None and fallback.beats == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        self._detach()

    def _detach(self) -> None:
        gate = self.gate
        with gate.lock:
            gate.shared = None
        self.attached = False
        page, sock = self.page, self._sock
        self.page, self._sock = None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                path = sock.getsockname()
                sock.close()
                os.unlink(path)
        if page is not None:
            page.release_slot(self.slot, self.pid)
            page.close()

    def stop(self, deregister: bool = True) -> None:
        if not self.started:
            return
        self._stop.set()
        self.started = False
        if self.attached:
            self._detach()
        if self.fallback is not None:
            self.fallback.stop(deregister)

    def after_fork(self) -> None:
        """In a forked child: the parent's slot, socket and threads are not ours."""
        self._start_lock = threading.Lock()
        self.started = False
        self.attached = False
        # the parent's mapping and socket: closed here, never released or unlinked (the
        # parent still uses them)
        with contextlib.suppress(Exception):
            if self._sock is not None:
                self._sock.close()
            if self.page is not None:
                self.page.close()
        self.page, self._sock, self.slot = None, None, -1
        self.fallback = None
        self.gate.reset()

    # ------------------------------------------------------------ request side (gate.lock held)

    def admit(self, gate: Gate) -> bool:
        """The request is counted in ``gate.in_flight``: publish, then read the page's
        generation.  Unchanged since this process last caught up: pass.  Changed (a pause
        began, or one ended that this process has not seen end, so its ``on_resume`` has
        not run with the payload, e.g. the new primary): hold it and catch up."""
        w = self.words
        w[self.i_in_flight] = gate.in_flight
        if w[hs.H_GEN] != self.seen_gen:
            gate.in_flight -= 1
            w[self.i_in_flight] = gate.in_flight
            self._pause_locally(gate)
            return False
        return True

    def publish(self, gate: Gate) -> None:
        w = self.words
        w[self.i_in_flight] = gate.in_flight
        w[self.i_held] = gate.held

    def left(self, gate: Gate) -> None:
        w = self.words
        w[self.i_in_flight] = gate.in_flight
        if gate.in_flight == 0 and w[hs.H_PAUSED] and self._sock is not None:
            hs.poke(self._sock, self._agent_path)  # the drain wait hears it now

    def _pause_locally(self, gate: Gate) -> None:
        view = self.page.pause_view() if self.page is not None else None
        token = (view.token if view else None) or "host"
        gate.synced = True
        gate.paused = True
        gate.token = token
        gate.acked_token = token
        gate.deadline = self.words[hs.H_DEADLINE] / 1e9
        gate._update_open()
        self.words[self.i_waiting] = 1
        if self._sock is not None:
            with contextlib.suppress(OSError):  # wake our link thread (on_pause, watch)
                self._sock.sendto(b"p", self._sock.getsockname())

    # ------------------------------------------------------------ link thread

    def _run(self) -> None:
        stop, sock, page, gate = self._stop, self._sock, self.page, self.gate
        if sock is None or page is None:  # pragma: no cover
            return
        while not stop.is_set() and self.attached:
            try:
                if self._step(stop, sock, page, gate):
                    return
            except Exception:  # this thread must live: held requests depend on it
                log.exception("intermission: host link of scope %r failed; retrying",
                              self.scope)
                stop.wait(RECHECK)

    def _step(self, stop: threading.Event, sock: socket.socket, page: hs.Page,
              gate: Gate) -> bool:
        """One wake-up of the link thread; True when it ends (stopped, or fell back)."""
        paused = gate.paused
        now = time.monotonic()
        wait = min(RECHECK, max(0.0, gate.deadline - now)) if paused else IDLE_CHECK
        with contextlib.suppress(OSError, ValueError):
            ready, _, _ = select.select([sock], [], [], wait)
            if ready:
                _drain(sock)
        if stop.is_set() or not self.attached:
            return True
        if page.agent_age() > hs.STALE_AGENT:
            log.warning("intermission: the host agent of %s stopped beating; this process "
                        "talks to Redis itself from now on", page.path)
            self._fall_back()
            return True
        if gate.paused:
            self._follow(page, gate)
        # no heartbeat thread in host mode: this thread keeps the process's own
        # Prometheus numbers current (held, in flight, paused, the counters)
        snap = gate.snapshot()
        gate.exporter.sync(held=snap.held, in_flight=snap.in_flight, paused=snap.paused,
                           stats=snap.metrics)
        return False

    def _follow(self, page: hs.Page, gate: Gate) -> None:
        """Held requests here: catch up with the page.  Still paused: keep holding (and if
        a resume happened since this process last looked, a pause having followed it at
        once, run ``on_resume`` with its payload, still in the page).  Ended: ``on_resume``
        with the payload, then release."""
        view = page.pause_view()
        gen = view.generation
        now_ns = time.monotonic_ns()
        if view.paused and now_ns < view.deadline_ns:
            if self.held_gen is not None:
                resumed_since = gen > self.held_gen
            else:  # last seen running at seen_gen (-1: attached during a pause)
                resumed_since = self.seen_gen >= 0 and gen > self.seen_gen + 1
            if resumed_since and gate.on_resume is not None:
                gate.run_hook("on_resume", gate.on_resume, _decode(page.payload()))
            if gen != self.held_gen and gate.on_pause is not None:
                gate.run_hook("on_pause", gate.on_pause)
            self.held_gen = gen
            with gate.lock:
                gate.deadline = view.deadline_ns / 1e9  # a renewal moved it
            return
        payload = _decode(page.payload()) if not view.paused else None
        if view.paused:  # the agent is gone or late; a later renewal of it is ignored
            log.warning("intermission: host pause %s of scope %r reached its expiry; releasing",
                        view.token, self.scope)
        self.words[self.i_waiting] = 0
        # caught up with this generation: released requests (and new ones) pass unless a
        # new pause has begun meanwhile (they check again)
        self.held_gen = None
        self.seen_gen = gen
        gate.apply_resume(None, payload)


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(16)
        except (BlockingIOError, OSError):
            return


def _decode(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


_LINKS: weakref.WeakSet[HostLink] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _registered
    _registered = False  # register the child for the agent's barrier itself (idempotent)
    for link in list(_LINKS):
        link.after_fork()


def _at_exit() -> None:
    for link in list(_LINKS):
        link.stop()


def start_all() -> None:
    for link in list(_LINKS):
        link.start()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
