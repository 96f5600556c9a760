"""The docker backend: one container per server plus Redis, on a private Docker network.

Started through testcontainers (imported only here, lazily).  Every published port is
bound to 127.0.0.1 only.  Replicas reach each other by network alias on port 3306
(``replication_host``/``replication_port`` in the config); roleswap and the test reach
them at their published loopback ports (``host``/``port``).

The server image contract (``roleswap/server:<flavor>``, built by ``docker/build``):

* MySQL/MariaDB on port 3306; every node's config file says ``read_only=1``; the
  primary is made writable at run time; the log line ``roleswap-server: ready`` once the
  accounts exist and (replicas) replication is configured;
* environment: ``ROLESWAP_SERVER_ID`` (int), ``ROLESWAP_ROLE`` (primary|replica),
  ``ROLESWAP_SOURCE`` (replicas: the primary's alias), ``ROLESWAP_GTID`` (1|0),
  ``ROLESWAP_CONTROL_USER``/``_PASSWORD``, ``ROLESWAP_REPL_USER``/``_PASSWORD``,
  ``ROLESWAP_APP_USER``/``_PASSWORD``, ``ROLESWAP_APP_DATABASE``, ``ROLESWAP_ROOT_PASSWORD``
  (root@'%', used by :meth:`RunningCluster.admin`).

``roleswap/redis:latest`` is a plain redis-server on 6379 (no password: it is only
reachable from this machine's loopback and the cluster's own network).

Passwords are random per cluster (:mod:`secrets`) and appear only in the containers'
environment and the config file (mode 0600); never in logs, errors or reprs.  Teardown
removes every container and the network, also after a failed start.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pymysql
from pymysql.connections import Connection

from roleswap.lab.provision import new_accounts
from roleswap.testing.cluster import AppAccount, ClusterError, RunningCluster, connect_retry
from roleswap.testing.engine import (
    REDIS_IMAGE,
    docker_client,
    image_prefix,
    import_testcontainers,
    require_images,
    server_image,
)
from roleswap.testing.prove import prove_replication
from roleswap.testing.render import ConfigSpec, ServerEntry, render_config, write_private

log_ = logging.getLogger("roleswap.testing")

READY_LINE = b"roleswap-server: ready"
MYSQL_PORT = 3306
REDIS_PORT = 6379
START_TIMEOUT = 180.0  # first start of a MySQL image initialises its datadir: seconds
CLUSTER = "test"
LABEL = "org.roleswap.testing.cluster"  # lets `docker ps --filter label=...` find strays


@contextmanager
def docker_cluster(server: str, replicas: int, gtid: bool, reason: str,
                   log: Callable[[str], None],
                   timeout: float = START_TIMEOUT) -> Iterator[RunningCluster]:
    """``replicas`` + 1 server containers of ``server`` and a Redis container; proven
    replicating before it yields; every container and the network removed at exit."""
    tc = import_testcontainers()
    from testcontainers.core.network import Network

    client = docker_client()
    try:
        require_images(client, server)
    finally:
        client.close()
    cid = secrets.token_hex(4)
    acc = new_accounts()
    root_password = secrets.token_urlsafe(18)
    hidden = (acc.control_password, acc.repl_password, acc.app_password, root_password)
    names = [f"db{i + 1}" for i in range(replicas + 1)]
    base = Path(tempfile.mkdtemp(prefix="roleswap-docker-"))
    t0 = time.monotonic()
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        network = Network(docker_network_kw={"labels": {LABEL: cid}})
        network.create()
        stack.callback(_quietly, "remove network", network.remove)
        started: list[Any] = []
        stack.callback(_remove_all, started)

        def container(image: str, alias: str, port: int, env: dict[str, str]) -> Any:
            c = (tc.DockerContainer(image).with_network(network).with_network_aliases(alias)
                 .with_name(f"roleswap-{cid}-{alias}")
                 .with_kwargs(hostname=alias, labels={LABEL: cid}))
            for key, value in env.items():
                c.with_env(key, value)
            c.ports[f"{port}/tcp"] = ("127.0.0.1", None)  # loopback only, a free port
            started.append(c)  # before start(): a half-created container is removed too
            return c

        log(f"docker: starting {server} db1..db{replicas + 1} and redis (cluster {cid})")
        redis = container(image_prefix() + REDIS_IMAGE, "redis", REDIS_PORT, {})
        dbs = {}
        for i, name in enumerate(names):
            env = {
                "ROLESWAP_SERVER_ID": str(i + 1),
                "ROLESWAP_ROLE": "primary" if i == 0 else "replica",
                "ROLESWAP_GTID": "1" if gtid else "0",
                "ROLESWAP_CONTROL_USER": acc.control_user, "ROLESWAP_CONTROL_PASSWORD": acc.control_password,
                "ROLESWAP_REPL_USER": acc.repl_user, "ROLESWAP_REPL_PASSWORD": acc.repl_password,
                "ROLESWAP_APP_USER": acc.app_user, "ROLESWAP_APP_PASSWORD": acc.app_password,
                "ROLESWAP_APP_DATABASE": acc.database, "ROLESWAP_ROOT_PASSWORD": root_password,
            }
            if i > 0:
                env["ROLESWAP_SOURCE"] = names[0]
            dbs[name] = container(image_prefix() + server_image(server), name, MYSQL_PORT, env)
        # Redis first, alone: the first start() may create testcontainers' Ryuk reaper,
        # which is not made for concurrent creation.  Then the servers in parallel (each
        # start is a few engine round trips); replicas retry until db1 answers.
        _start(redis)
        with ThreadPoolExecutor(len(dbs)) as pool:
            list(pool.map(_start, dbs.values()))
        deadline = time.monotonic() + timeout
        _wait_ready(dbs, deadline, hidden)
        ports = {name: _published(c, MYSQL_PORT) for name, c in dbs.items()}
        redis_port = _published(redis, REDIS_PORT)
        _wait_redis(redis_port, deadline)

        def admin(name: str) -> Connection[Any]:
            return pymysql.connect(host="127.0.0.1", port=ports[name], user="root",
                                   password=root_password, autocommit=True, ssl_disabled=True,
                                   connect_timeout=5, read_timeout=90)

        conns = {n: connect_retry(functools.partial(admin, n), 30, f"{n} (root at 127.0.0.1:{ports[n]})")
                 for n in names}
        try:
            # bounded below the connections' read timeout (the wait runs on the server)
            wait = min(60.0, max(5.0, deadline - time.monotonic()))
            problems = prove_replication(conns, names[0], wait)
        finally:
            for conn in conns.values():
                with contextlib.suppress(Exception):
                    conn.close()
        if problems:
            raise ClusterError(f"the {server} containers do not replicate: " + "; ".join(problems),
                               remedy="see `docker logs` of the server containers; "
                                      "rebuild the images with docker/build")
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        spec = ConfigSpec(
            cluster=CLUSTER, control_user=acc.control_user, control_password=acc.control_password,
            repl_user=acc.repl_user, repl_password=acc.repl_password, redis_url=redis_url,
            app_user=acc.app_user, app_password=acc.app_password, database=acc.database,
            journal_dir=base / "journal",
            servers=[ServerEntry(n, "127.0.0.1", ports[n], n, MYSQL_PORT) for n in names],
            comment=f"servers: {server} in containers (label {LABEL}={cid})",
        )
        config_path = write_private(base / "roleswap.toml", render_config(spec))
        log(f"docker: {server} cluster {cid} up in {time.monotonic() - t0:.1f}s")
        yield RunningCluster(
            id=cid, server=server, backend="docker", backend_reason=reason, replicas=replicas, gtid=gtid,
            config_path=config_path, servers={n: ("127.0.0.1", ports[n]) for n in names},
            redis_url=redis_url,
            app_account=AppAccount(acc.app_user, acc.app_password, acc.database), _admin=admin,
        )


def _start(c: Any) -> None:
    """``c.start()``, with the usual failure (Ryuk's image cannot be pulled) explained."""
    try:
        c.start()
    except Exception as e:
        text = str(e)
        if "ryuk" in text.lower():
            raise ClusterError(f"testcontainers could not start its Ryuk reaper: {text[:200]}",
                               remedy="set TESTCONTAINERS_RYUK_DISABLED=true (roleswap.testing removes "
                                      "its containers itself) or make the Ryuk image available") from None
        raise ClusterError(f"could not start a container of {c.image}: {text[:300]}",
                           remedy="see `docker info` and the engine's log") from None


def _wait_ready(dbs: dict[str, Any], deadline: float, hidden: tuple[str, ...]) -> None:
    """Until every container logged ``roleswap-server: ready``; ClusterError with the
    tail of its log (passwords scrubbed) if one exits or the deadline passes."""
    pending = dict(dbs)
    while pending:
        for name, c in list(pending.items()):
            wrapped = c.get_wrapped_container()
            logs = wrapped.logs()
            if READY_LINE in logs:
                del pending[name]
                continue
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                raise ClusterError(f"container {name} ({wrapped.image.tags or wrapped.image.id}) "
                                   f"exited before it was ready: {_tail(logs, hidden)}",
                                   remedy=f"docker logs {wrapped.name} (while it exists); rebuild "
                                          "the image with docker/build")
        if pending and time.monotonic() > deadline:
            detail = "; ".join(f"{n}: {_tail(c.get_wrapped_container().logs(), hidden)}"
                               for n, c in pending.items())
            raise ClusterError(f"{', '.join(pending)} did not log 'roleswap-server: ready' in time: {detail}",
                               remedy="a slow machine: pass a larger timeout; else see the logs")
        if pending:
            time.sleep(0.2)


def _tail(logs: bytes, hidden: tuple[str, ...], lines: int = 8) -> str:
    """The last ``lines`` distinct lines of a container's log, secrets replaced by ***."""
    kept: list[str] = []
    for line in logs.decode(errors="replace").strip().splitlines():
        if line.strip() and (not kept or kept[-1] != line):  # a repeated progress line once
            kept.append(line)
    text = " | ".join(kept[-lines:])
    for secret in hidden:
        text = text.replace(secret, "***")
    return text or "(no output)"


def _published(c: Any, port: int) -> int:
    """The 127.0.0.1 host port of container port ``port`` (read from the engine, whatever
    testcontainers' connection mode: we bound it to loopback ourselves)."""
    wrapped = c.get_wrapped_container()
    wrapped.reload()
    bindings = (wrapped.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
    for b in bindings:
        if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
            return int(b["HostPort"])
    raise ClusterError(f"container {wrapped.name} has no published port for {port}",
                       remedy="see `docker port` of the container")


def _wait_redis(port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"redis (127.0.0.1:{port}) does not answer PING",
                               remedy="see `docker logs` of the redis container")
        time.sleep(0.05)


def _remove_all(started: list[Any]) -> None:
    """Remove every container (in parallel: each removal is a round trip plus a kill)."""
    if started:
        with ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(lambda c: _quietly("remove container", c.stop), started))


def _quietly(what: str, fn: Callable[[], object]) -> None:
    """Teardown goes on past one failure (the rest must still go); the failure is logged."""
    try:
        fn()
    except Exception as e:
        log_.warning("roleswap.testing: could not %s: %s", what, str(e)[:200])
