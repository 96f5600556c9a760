"""``start_cluster``: validate, choose a backend, start, yield, always tear down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from roleswap.lab.flavors import DEFAULT_SERVER, FLAVORS
from roleswap.testing.cluster import RunningCluster

log = logging.getLogger("roleswap.testing")

BACKENDS = ("auto", "docker", "process")
SERVERS = tuple(FLAVORS)  # mariadb-10.11, mariadb-11.8, mysql-9.7
MIN_REPLICAS, MAX_REPLICAS = 1, 8
DEFAULT_REPLICAS = 2

_choices: dict[str, tuple[str, str]] = {}  # flavor -> (backend, why): auto asks once per flavor
_choices_lock = threading.Lock()


def validate(server: str, replicas: int, backend: str) -> None:
    """ValueError naming the valid values for any argument out of range (nothing started)."""
    if server not in FLAVORS:
        raise ValueError(f"unknown server flavor {server!r}; use one of: {', '.join(SERVERS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if isinstance(replicas, bool) or not isinstance(replicas, int) \
            or not MIN_REPLICAS <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas must be an integer from {MIN_REPLICAS} to {MAX_REPLICAS}, "
                         f"got {replicas!r}")


def choose_backend(server: str, backend: str) -> tuple[str, str]:
    """(backend, why): ``docker``/``process`` as asked, or for ``auto`` docker when an
    engine answers within ~2 s (``DOCKER_HOST`` respected) and has this flavor's images,
    else process.  The auto decision is made once per flavor per process, and logged."""
    if backend != "auto":
        return backend, f"backend={backend} was asked for"
    with _choices_lock:
        if server not in _choices:
            from roleswap.testing.engine import probe

            found = probe(server)
            _choices[server] = (("docker", f"auto: {found.reason}") if found.usable else
                                ("process", f"auto: no docker ({found.reason}); local processes"))
            log.info("roleswap.testing: %s cluster on the %s backend (%s)", server,
                     *_choices[server])
        return _choices[server]


@contextmanager
def start_cluster(server: str = DEFAULT_SERVER, replicas: int = DEFAULT_REPLICAS,
                  backend: str = "auto", gtid: bool = True,
                  log: Callable[[str], None] | None = None) -> Iterator[RunningCluster]:
    """Start a cluster of real servers for a test: ``db1`` the primary, ``db2``..
    ``db<replicas+1>`` its replicas (GTID, or file/position with ``gtid=False``), and a
    Redis; yield a :class:`RunningCluster`; tear everything down when the block ends,
    also when it raises.

    ``server``: a flavor of ``roleswap lab servers`` (``mariadb-10.11``, ``mariadb-11.8``,
    ``mysql-9.7``).  ``backend``: ``process`` (local processes, as ``roleswap lab up``),
    ``docker`` (containers of the roleswap images, through testcontainers), or ``auto``
    (docker when usable, else process; see ``RunningCluster.backend_reason``).
    ``replicas``: 1 to 8.  ``log`` receives progress lines (default: the logger
    ``roleswap.testing`` at INFO).

    Raises ValueError for an argument out of range and
    :class:`~roleswap.testing.ClusterError` (with a remedy) when the cluster cannot start.
    """
    validate(server, replicas, backend)
    say = log or (lambda msg: logging.getLogger("roleswap.testing").info("%s", msg))
    chosen, reason = choose_backend(server, backend)
    t0 = time.monotonic()
    if chosen == "docker":
        from roleswap.testing.containers import docker_cluster

        cm = docker_cluster(server, replicas, gtid, reason, say)
    else:
        from roleswap.testing.process import process_cluster

        cm = process_cluster(server, replicas, gtid, reason, say)
    with cm as cluster:
        say(f"{server} cluster ({chosen}, {replicas} replica(s)) ready in {time.monotonic() - t0:.1f}s")
        yield cluster
