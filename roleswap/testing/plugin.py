"""The pytest plugin of ``roleswap[testing]`` (entry point ``pytest11: roleswap``).

Loaded into every pytest run once roleswap is installed, so it stays out of the way:
its options and ini settings all start with ``roleswap``, and it starts nothing
unless a test uses one of its fixtures.

Settings (command line over ini over default):

=========================  =====================  ==========================================
option                     ini                    meaning
=========================  =====================  ==========================================
``--roleswap-server``      ``roleswap_server``    flavor (default ``mariadb-10.11``)
``--roleswap-backend``     ``roleswap_backend``   ``auto`` (default), ``docker``, ``process``
``--roleswap-replicas``    ``roleswap_replicas``  replicas besides db1, 1-8 (default 2)
=========================  =====================  ==========================================

Fixtures:

* ``roleswap_cluster`` (scope **module**): one cluster shared by the tests of a module,
  torn down after the module's last test, also when tests fail.  Tests that swap
  should leave ``db1`` the primary, or not rely on who is (use ``cluster.primary()``);
* ``roleswap_cluster_factory`` (scope function): ``factory(server=..., replicas=...,
  backend=..., gtid=...)`` starts a fresh cluster for this test only (unset arguments
  follow the settings above), torn down when the test ends;
* ``roleswap_cluster_settings`` (scope session): the settings, resolved.

Once one of them is used, SIGTERM to pytest (a CI job cancelled or timed out) ends the
run as Ctrl-C does, so every cluster is torn down (unless SIGTERM already had a handler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from roleswap.testing.cluster import RunningCluster
from roleswap.testing.interrupt import teardown_on_sigterm
from roleswap.testing.start import (
    BACKENDS,
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    MIN_REPLICAS,
    SERVERS,
    start_cluster,
    validate,
)

DEFAULT_SERVER = SERVERS[0]


@dataclass(frozen=True)
class ClusterSettings:
    """What ``roleswap_cluster`` starts, from the command line, the ini file or defaults."""

    server: str
    backend: str
    replicas: int


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("roleswap", "roleswap.testing: clusters of real MySQL/MariaDB servers")
    group.addoption("--roleswap-server", dest="roleswap_server", default=None, choices=SERVERS,
                    help=f"server flavor of roleswap_cluster (ini roleswap_server; default {DEFAULT_SERVER})")
    group.addoption("--roleswap-backend", dest="roleswap_backend", default=None, choices=BACKENDS,
                    help="where its servers run: auto (docker when an engine with the roleswap "
                         "images answers, else local processes), docker or process "
                         "(ini roleswap_backend; default auto)")
    group.addoption("--roleswap-replicas", dest="roleswap_replicas", default=None, type=int,
                    metavar="N", help=f"replicas besides db1, {MIN_REPLICAS}-{MAX_REPLICAS} "
                                      f"(ini roleswap_replicas; default {DEFAULT_REPLICAS})")
    parser.addini("roleswap_server", f"roleswap_cluster's server flavor: {', '.join(SERVERS)}",
                  default=DEFAULT_SERVER)
    parser.addini("roleswap_backend", f"roleswap_cluster's backend: {', '.join(BACKENDS)}",
                  default="auto")
    parser.addini("roleswap_replicas", f"roleswap_cluster's replicas ({MIN_REPLICAS}-{MAX_REPLICAS})",
                  default=str(DEFAULT_REPLICAS))


def settings(config: pytest.Config) -> ClusterSettings:
    """The resolved settings; pytest.UsageError naming the valid values if one is wrong."""
    server = config.getoption("roleswap_server") or str(config.getini("roleswap_server")).strip()
    backend = config.getoption("roleswap_backend") or str(config.getini("roleswap_backend")).strip()
    replicas_opt = config.getoption("roleswap_replicas")
    raw = replicas_opt if replicas_opt is not None else str(config.getini("roleswap_replicas")).strip()
    try:
        try:
            replicas = int(raw)
        except ValueError:
            raise ValueError(f"replicas must be an integer from {MIN_REPLICAS} to {MAX_REPLICAS}, "
                             f"got {raw!r}") from None
        validate(server, replicas, backend)
    except ValueError as e:
        raise pytest.UsageError(f"roleswap.testing: {e} (--roleswap-* options or roleswap_* ini "
                                "settings)") from None
    return ClusterSettings(server, backend, replicas)


def pytest_configure(config: pytest.Config) -> None:
    settings(config)  # refuse a bad ini value at start-up, not in the middle of the run


@pytest.fixture(scope="session")
def roleswap_cluster_settings(pytestconfig: pytest.Config) -> ClusterSettings:
    """The server flavor, backend and replicas ``roleswap_cluster`` uses.  Every fixture
    that starts servers asks for it: from then on SIGTERM ends the run like Ctrl-C, so
    the teardowns stop the servers (see :mod:`roleswap.testing.interrupt`)."""
    teardown_on_sigterm()
    return settings(pytestconfig)


@pytest.fixture(scope="module")
def roleswap_cluster(roleswap_cluster_settings: ClusterSettings) -> Iterator[RunningCluster]:
    """A cluster of real servers shared by this module's tests (see the module docstring)."""
    s = roleswap_cluster_settings
    with start_cluster(s.server, replicas=s.replicas, backend=s.backend) as cluster:
        yield cluster


@pytest.fixture
def roleswap_cluster_factory(
    roleswap_cluster_settings: ClusterSettings,
) -> Iterator[Callable[..., RunningCluster]]:
    """``factory(server=None, replicas=None, backend=None, gtid=True)``: a fresh cluster of
    this test's own (each call starts one), all torn down when the test ends."""
    s = roleswap_cluster_settings
    with ExitStack() as stack:
        def factory(server: str | None = None, replicas: int | None = None,
                    backend: str | None = None, gtid: bool = True) -> RunningCluster:
            return stack.enter_context(start_cluster(
                server or s.server, replicas=s.replicas if replicas is None else replicas,
                backend=backend or s.backend, gtid=gtid))

        yield factory
