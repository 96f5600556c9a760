"""The host agent's shared page: slots, pause state, payload, refusals (no Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from intermission import hostshm as hs


def test_slots_are_claimed_released_and_taken_back_from_dead_processes(tmp_path: Path) -> None:
    page = hs.Page.create(tmp_path, "s1")
    try:
        mine = page.claim_slot(os.getpid())
        assert mine == 0 and page.slots_in_use() == [0]
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        # a slot held by a process that has exited (pid + start time no longer match)
        w = page.words
        i = page.slot_index(1, 0)
        w[i + hs.S_PID], w[i + hs.S_START], w[i + hs.S_IN_FLIGHT] = dead.pid, 12345, 3
        assert page.slots_in_use() == [0, 1]
        assert page.claim_slot(os.getpid()) == 1  # slot 1 was reused; its count is reset
        assert w[i + hs.S_IN_FLIGHT] == 0
        page.release_slot(0, os.getpid())
        assert page.slots_in_use() == [1]
        page.release_slot(1, os.getpid() + 1)  # not its owner: nothing happens
        assert page.slots_in_use() == [1]
    finally:
        page.close()


def test_pause_state_and_payload_round_trip(tmp_path: Path) -> None:
    agent = hs.Page.create(tmp_path, "s2")
    proc = hs.Page.attach(tmp_path, "s2")
    try:
        assert proc.pause_view() == hs.PauseView(False, 0, 0, None)
        agent.set_pause("tok_12345678", 10**18)
        view = proc.pause_view()
        assert view.paused and view.deadline_ns == 10**18 and view.token == "tok_12345678"
        agent.set_pause("tok_12345678", 2 * 10**18)  # a renewal: same generation
        assert proc.pause_view().generation == view.generation
        agent.clear_pause(b'{"primary": "db2"}')
        assert not proc.pause_view().paused and proc.pause_view().generation > view.generation
        assert proc.payload() == b'{"primary": "db2"}'
        agent.clear_pause(None)
        assert proc.payload() is None
    finally:
        agent.close()
        proc.close()


def test_a_new_agent_keeps_the_previous_agents_slots_and_pause(tmp_path: Path) -> None:
    first = hs.Page.create(tmp_path, "s3")
    first.claim_slot(os.getpid())
    first.set_pause("tok_abcdefgh", 10**18)
    first.close()
    second = hs.Page.create(tmp_path, "s3")
    try:
        assert second.slots_in_use() == [0]
        assert second.pause_view().token == "tok_abcdefgh"
    finally:
        second.close()


def test_refusals_name_the_cause(tmp_path: Path) -> None:
    with pytest.raises(hs.HostModeUnavailable, match="no host agent page"):
        hs.Page.attach(tmp_path, "absent")
    (tmp_path / "junk.host").write_bytes(b"x" * 10)
    with pytest.raises(hs.HostModeUnavailable, match="not an intermission host page"):
        hs.Page.create(tmp_path, "junk")
    (tmp_path / "zero.host").write_bytes(b"\0" * hs.SIZE)
    with pytest.raises(hs.HostModeUnavailable, match="not an intermission host page"):
        hs.Page.attach(tmp_path, "zero")
    deep = tmp_path / ("d" * 90)
    with pytest.raises(hs.HostModeUnavailable, match="too long for the sockets"):
        hs.page_path(deep, "scope")


def test_agent_age_and_process_start(tmp_path: Path) -> None:
    page = hs.Page.create(tmp_path, "s4")
    try:
        assert page.agent_age() == float("inf")
        page.beat(os.getpid())
        assert page.agent_age() < 5
        assert hs.alive(os.getpid(), hs.process_start(os.getpid()))
        assert not hs.alive(os.getpid(), hs.process_start(os.getpid()) + 1)
    finally:
        page.close()


def test_one_agent_per_directory_and_scope(tmp_path: Path) -> None:
    fd = hs.agent_lock(tmp_path, "s5")
    try:
        with pytest.raises(hs.HostModeUnavailable, match=rf"another host agent \(pid {os.getpid()}\)"):
            hs.agent_lock(tmp_path, "s5")
        os.close(hs.agent_lock(tmp_path, "other"))  # another scope is another agent
    finally:
        os.close(fd)
    os.close(hs.agent_lock(tmp_path, "s5"))  # free again once the first one is gone


def test_a_new_agent_clears_an_expired_pause_and_frees_dead_slots(tmp_path: Path) -> None:
    import time

    from intermission.hostagent import HostGate

    page = hs.Page.create(tmp_path, "s6")
    try:
        page.set_pause("tok_expired1", time.monotonic_ns() - 1)
        mine = page.claim_slot(os.getpid())
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        i = page.slot_index(mine + 1, 0)
        page.words[i + hs.S_PID], page.words[i + hs.S_START] = dead.pid, 1
        gate = HostGate("s6", page, str(tmp_path))
        assert not gate.paused and not page.pause_view().paused
        assert gate.totals() == (0, 0, 2)  # nothing in flight: not looked at yet
        gate.sweep()
        assert gate.totals() == (0, 0, 1) and page.slots_in_use() == [mine]
        page.words[page.slot_index(mine, hs.S_IN_FLIGHT)] = 3
        assert gate.snapshot().in_flight == 3 and gate.snapshot().metrics["processes"] == 1.0
    finally:
        page.close()


def test_status_counts_the_app_processes_a_host_agent_carries() -> None:
    from intermission import protocol as p
    from intermission.controller import Status

    def info(kind: str, n: int = 0) -> p.ProcessInfo:
        return p.ProcessInfo(id=f"h:{kind}:{n}", host="h", pid=1, kind=kind, started_at=0.0,
                             updated_at=0.0, in_flight=0, held=0, paused=False, acked_token=None,
                             metrics={"processes": float(n)} if kind == "host" else {})

    own = Status("s", None, None, [info("wsgi"), info("asgi")], None)
    assert (own.app_processes, own.host_agents) == (2, 0)
    assert own.describe_processes() == "2 live process(es)"
    mixed = Status("s", None, None, [info("host", 4), info("host", 3), info("wsgi")], None)
    assert (mixed.app_processes, mixed.host_agents) == (8, 2)
    assert mixed.describe_processes() == ("2 host agent(s) carrying 7 app process(es) and 1 "
                                          "process(es) with their own agent")
    empty = Status("s", None, None, [info("host", 0)], None)
    assert empty.app_processes == 0  # preflight then warns: nothing will hold requests


def test_an_agent_taking_over_a_paused_page_makes_every_process_look_again(
        tmp_path: Path) -> None:
    """The previous agent died between the pause flag and the generation: without a new
    generation, a process that never saw the pause would keep admitting requests."""
    import time

    from intermission.hostagent import HostGate

    page = hs.Page.create(tmp_path, "s7")
    try:
        w = page.words
        gen = w[hs.H_GEN]
        raw = b"tok_halfdone"
        page._mm[hs.TOKEN_OFFSET:hs.TOKEN_OFFSET + len(raw)] = raw
        w[hs.H_TOKEN_LEN], w[hs.H_DEADLINE] = len(raw), time.monotonic_ns() + 10**10
        w[hs.H_PAUSED] = 1  # ... and the agent was killed here, before H_GEN += 1
        gate = HostGate("s7", page, str(tmp_path))
        assert gate.paused and gate.acked_token == "tok_halfdone"
        assert w[hs.H_GEN] == gen + 1
    finally:
        page.close()


def test_a_payload_write_cut_short_does_not_lose_every_later_payload(tmp_path: Path) -> None:
    page = hs.Page.create(tmp_path, "s8")
    page.words[hs.H_PAYLOAD_SEQ] += 1  # odd: an agent was killed while writing a payload
    page.close()
    page = hs.Page.create(tmp_path, "s8")
    try:
        assert page.payload() is None  # the cut-short one is not trusted
        page.clear_pause(b'{"primary": "db2"}')
        assert page.payload() == b'{"primary": "db2"}'
    finally:
        page.close()


def test_the_heartbeat_never_pairs_an_acknowledgement_with_counts_read_before_it(
        tmp_path: Path) -> None:
    from intermission.hostagent import HostGate

    page = hs.Page.create(tmp_path, "s9")
    try:
        gate = HostGate("s9", page, str(tmp_path))

        def ack_lands_during_the_scan() -> tuple[int, int, int]:
            gate.acked_token = "tok_12345678"  # the pause is published while we scan
            return 0, 0, 0

        gate.totals = ack_lands_during_the_scan  # type: ignore[method-assign]
        assert gate.snapshot().acked_token is None  # read before the counts: not acked yet
    finally:
        page.close()


def test_zombies_and_other_pid_namespaces_are_not_alive_processes(tmp_path: Path) -> None:
    import time

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 5
    while hs.process_start(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # it exits and stays a zombie until we reap it
    assert Path(f"/proc/{child.pid}").exists() and hs.process_start(child.pid) == 0
    child.wait()
    page = hs.Page.create(tmp_path, "s10")
    try:
        assert page.words[hs.H_PIDNS] == hs.pid_namespace() > 0
    finally:
        page.close()
