"""``intermission host-agent``: one process per host acknowledges pauses for every app
process of that host (started with ``host_agent=<dir>``).

With one Redis agent per app process, each process wakes, writes a heartbeat and
publishes an ack for every pause: ~0.7 ms of CPU each, so 300 processes on 2 cores
stretch the pause window by ~380 ms.  Here one process per host does that, whatever
the number of app processes: it runs the same :class:`~intermission.agent.Agent` (same
release rules, same heartbeat, one entry in ``intermission status`` of kind ``host``),
with a :class:`HostGate` that applies a pause by setting the page's flag (then
``membarrier``), and reports the in-flight and held counts of every attached process
as read from the page.  See :mod:`intermission.hostshm` for why that is safe.

The agent heartbeats as one process whose ``in_flight`` is the host's total; its metric
``processes`` is the number of app processes attached.  App processes attached to it
have no heartbeat of their own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import threading
import time
from typing import Any

from intermission import hostshm as hs
from intermission.agent import Agent
from intermission.state import ACK, PROGRESS, Gate, Snapshot

log = logging.getLogger("intermission")

POLL_PAUSED = 0.002  # seconds between scans of the page while paused and not drained
SWEEP_EVERY = 5.0  # seconds between looks for slots of exited processes (never while paused)


class HostGate(Gate):
    """The gate of the host agent: its state is the page's (see module docstring)."""

    def __init__(self, scope: str, page: hs.Page, directory: str) -> None:
        super().__init__(scope, max_hold=3600.0)
        self.page = page
        self.directory = directory
        self.pid = os.getpid()
        view = page.pause_view()
        if view.paused and view.token and time.monotonic_ns() < view.deadline_ns:
            # a previous agent's pause: the processes still hold it; it ends by the same
            # rules as ever (a resume of that token, or its deadline)
            self.paused, self.token, self.acked_token = True, view.token, view.token
            self.deadline = view.deadline_ns / 1e9
            self.synced = True
            # a new generation: the previous agent may have died between the flag and the
            # generation, and a process that never saw this pause must look again
            page.words[hs.H_PAUSED] = 1
            page.words[hs.H_GEN] += 1
        elif view.paused:  # expired meanwhile: the processes already let requests pass
            page.clear_pause(None)
        self.poke_sock: Any = None  # set by run(): the agent's own socket
        self.processes = 0

    # Gate.apply_pause / apply_resume call these (see there): the page is this gate's state
    def _pause_applied(self, token: str, deadline: float) -> None:
        self.page.set_pause(token, int(deadline * 1e9))

    def _pause_published(self) -> None:
        # before the acknowledgement: from now on a request either saw the pause or is in
        # the counts the heartbeat reads
        hs.barrier()

    def _resume_applied(self, payload: dict[str, Any] | None) -> None:
        self.page.clear_pause(None if payload is None else json.dumps(payload).encode())

    def _resume_published(self) -> None:
        hs.barrier()  # a process that now marks itself waiting reads the new generation
        self.poke_waiting()

    def poke_waiting(self) -> None:
        sock, w = self.poke_sock, self.page.words
        if sock is None:
            return
        for slot in self.page.slots_in_use():
            if w[self.page.slot_index(slot, hs.S_WAITING)]:
                hs.poke(sock, hs.slot_socket(self.directory, self.scope, slot))

    def mark_synced(self) -> None:
        with self.lock:
            self.synced = True

    def sweep(self) -> None:
        """Free the slots of processes that are gone (even with nothing in flight), so the
        ``processes`` count stays true after workers are replaced."""
        page, w = self.page, self.page.words
        for slot in page.slots_in_use():
            i = page.slot_index(slot, 0)
            if not hs.alive(w[i + hs.S_PID], w[i + hs.S_START]):
                page.release_slot(slot, w[i + hs.S_PID])

    def totals(self) -> tuple[int, int, int]:
        """(in flight, held, processes) over the live attached processes; a dead one's
        slot is freed (its requests died with it)."""
        page, w = self.page, self.page.words
        in_flight = held = n = 0
        for slot in page.slots_in_use():
            i = page.slot_index(slot, 0)
            f, h = w[i + hs.S_IN_FLIGHT], w[i + hs.S_HELD]
            if (f or h) and not hs.alive(w[i + hs.S_PID], w[i + hs.S_START]):
                page.release_slot(slot, w[i + hs.S_PID])
                continue
            in_flight += max(0, f)
            held += max(0, h)
            n += 1
        return in_flight, held, n

    def snapshot(self) -> Snapshot:
        # the acknowledgement first, the counts after: counts read before a pause was
        # published must never go out as "acknowledged, 0 in flight"
        with self.lock:
            paused, acked, stats = self.paused, self.acked_token, self.stats.as_dict()
        in_flight, held, n = self.totals()
        self.processes = n
        return Snapshot(in_flight, held, paused, acked, {**stats, "processes": float(n)}, [])


def run(redis_url: str, scope: str, directory: str, *, stop: threading.Event | None = None,
        heartbeat_interval: float = 0.5, poll_interval: float = 1.0) -> None:
    """Run the host agent until ``stop`` is set (or SIGTERM/SIGINT in the main thread).
    Raises :class:`~intermission.hostshm.HostModeUnavailable` if it cannot work here."""
    os.makedirs(directory, mode=0o770, exist_ok=True)
    hs.register_barrier()  # checks membarrier works here before anything is created
    lock = hs.agent_lock(directory, scope)  # one agent per directory and scope
    page = hs.Page.create(directory, scope)
    sock = hs.bind(hs.agent_socket(directory, scope))
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    gate = HostGate(scope, page, directory)
    gate.poke_sock = sock
    agent = Agent(gate, scope=scope, kind="host", redis_url=redis_url,
                  heartbeat_interval=heartbeat_interval, poll_interval=poll_interval)
    page.beat(gate.pid)
    agent.start()
    log.info("intermission: host agent for scope %r at %s (pid %d)", scope, page.path, gate.pid)
    try:
        _loop(gate, page, sock, stop)
    finally:
        agent.stop()
        page.words[hs.H_AGENT_BEAT] = 0  # processes stop waiting for us at once
        with contextlib.suppress(OSError):
            sock.close()
            os.unlink(hs.agent_socket(directory, scope))
        page.close()
        os.close(lock)


def _loop(gate: HostGate, page: hs.Page, sock: Any, stop: threading.Event) -> None:
    """Beat; while paused, watch the counts (pokes from processes, and a scan every
    ``POLL_PAUSED``) and tell the heartbeat when the host drained."""
    last: int | None = None
    next_beat = next_sweep = 0.0
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_beat:
            page.beat(gate.pid)
            next_beat = now + hs.BEAT_EVERY
        if now >= next_sweep and not gate.paused:
            gate.sweep()
            next_sweep = now + SWEEP_EVERY
        paused = gate.paused
        wait = POLL_PAUSED if paused and last != 0 else min(hs.BEAT_EVERY, 0.05)
        with contextlib.suppress(OSError, ValueError):
            ready, _, _ = select.select([sock], [], [], wait)
            if ready:
                while True:
                    try:
                        sock.recv(16)
                    except (BlockingIOError, OSError):
                        break
        if not gate.paused:
            last = None
            continue
        in_flight, _, _ = gate.totals()
        if in_flight != last:
            gate.notify(ACK if in_flight == 0 else PROGRESS)
            last = in_flight
