"""procs.alive: a process whose main thread has exited is alive while another thread runs."""
from __future__ import annotations

import subprocess
import sys
import time

from roleswap.lab import procs

# The main thread leaves with pthread_exit: the kernel then shows the process as a zombie
# ("Z" in /proc/PID/stat) although its other thread still runs -- what a multi-threaded
# server (HAProxy) looks like for a moment after SIGTERM, its sockets still answering.
LEADER_EXITS_FIRST = """
import ctypes, sys, threading
threading.Thread(target=sys.stdin.read).start()  # runs until the test closes stdin
print("ready", flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_process_whose_main_thread_exited_is_alive_until_its_last_thread_ends() -> None:
    p = subprocess.Popen([sys.executable, "-c", LEADER_EXITS_FIRST], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 30
        while procs._proc_state(p.pid) != "Z":  # the main thread is gone
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert procs.alive(p.pid)
        p.stdin.close()  # the other thread returns: the process ends
        p.wait(30)
        assert not procs.alive(p.pid)
    finally:
        p.kill()
        p.wait()
