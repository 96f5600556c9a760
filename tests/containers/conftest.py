"""Container tests: a real Docker engine and the project's images (docker/).

scripts/test provides both through scripts/_docker.sh, which exports:

* ``DOCKER_HOST`` (a private engine when it had to start one) and, once the engine
  answers and every image is built, ``ROLESWAP_DOCKER_REQUIRED=1``: from then on a
  missing engine or image is a FAILURE here, never a skip;
* ``ROLESWAP_DOCKER_SKIP="reason"`` when Docker cannot run on this machine (not root and
  no engine): every test here skips with that reason;
* ``ROLESWAP_DOCKER_ERROR="reason"`` when setting Docker up failed: every test fails with it.

Run on your own against any engine that answers (after ``docker/build``):
``pytest tests/containers``.  Everything a test creates carries the label
``org.roleswap.test`` and is removed by id when the test (or module) ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from roleswap.mysql.dialect import ReplicaStatus, dialect_for

HERE = Path(__file__).parent
REPO = HERE.parent.parent
LABEL = "org.roleswap.test"
READY_LINE = "roleswap-server: ready"
FLAVORS = ("mariadb-10.11", "mariadb-11.8", "mysql-9.7")
SERVER_IMAGE = "roleswap/server:{}"
REDIS_IMAGE = "roleswap/redis:latest"
ROLESWAP_IMAGE = "roleswap/roleswap:latest"
DEMO_IMAGE = "roleswap/demo-app:latest"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "containers: needs a Docker engine and the project's images (tests/containers; "
                   "scripts/test provides both, or skips them with the reason)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.containers)


def _unavailable(reason: str) -> None:
    """Skip, unless scripts/test promised an engine and images (then it is a failure)."""
    if os.environ.get("ROLESWAP_DOCKER_REQUIRED") == "1":
        pytest.fail(f"Docker was set up for these tests but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker-py client for the engine at DOCKER_HOST (or the default socket)."""
    if os.environ.get("ROLESWAP_DOCKER_ERROR"):
        pytest.fail(f"setting up Docker failed: {os.environ['ROLESWAP_DOCKER_ERROR']}", pytrace=False)
    if os.environ.get("ROLESWAP_DOCKER_SKIP"):
        pytest.skip(f"no Docker here: {os.environ['ROLESWAP_DOCKER_SKIP']}")
    try:
        import docker
    except ImportError:
        _unavailable("the docker package is not installed (pip install -e '.[test]')")
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    error = ""
    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
    except Exception as e:
        error = f"no Docker engine answers at {where}: {type(e).__name__}: {e}"
    if error:
        _unavailable(error)
    yield client
    client.close()


@pytest.fixture(scope="session")
def require_images(docker_client: Any) -> Callable[..., None]:
    """``require_images(tag, ...)``: skip (or fail, see the module doc) unless built."""
    import docker

    def check(*tags: str) -> None:
        missing = []
        for tag in tags:
            try:
                docker_client.images.get(tag)
            except docker.errors.ImageNotFound:
                missing.append(tag)
        if missing:
            _unavailable(f"image(s) {', '.join(missing)} are not built (run docker/build)")

    return check


def _tar(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Server:
    """A roleswap/server container: its name on the network and a published port."""

    name: str
    container: Any
    flavor: str
    root_password: str
    port: int = 0  # published on 127.0.0.1

    @property
    def engine(self) -> str:
        return "mysql" if self.flavor.startswith("mysql") else "mariadb"

    def logs(self) -> str:
        return str(self.container.logs().decode(errors="replace"))

    def ready_count(self) -> int:
        return self.logs().count(READY_LINE)

    def root(self, timeout: float = 5.0) -> pymysql.connections.Connection[Any]:
        """root@'%' over the published port (ROLESWAP_ROOT_PASSWORD)."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=self.root_password,
                               autocommit=True, connect_timeout=timeout, read_timeout=30,
                               ssl_disabled=True, cursorclass=pymysql.cursors.DictCursor)

    def query(self, sql: str, args: Any = None) -> list[dict[str, Any]]:
        conn = self.root()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def replica(self) -> ReplicaStatus | None:
        """The replication channel as roleswap reads it (the server's own dialect)."""
        d = dialect_for(str(self.query("SELECT VERSION() AS v")[0]["v"]))
        sql, params = d.replica_status()
        rows = self.query(sql, params or None)
        return ReplicaStatus.from_row(rows[0]) if rows else None

    def threads_running(self) -> bool:
        r = self.replica()
        return r is not None and r.running

    def source_host(self) -> str:
        r = self.replica()
        return r.source_host if r is not None else ""

    def exec(self, *argv: str) -> tuple[int, str]:
        rc, out = self.container.exec_run(list(argv), demux=False)
        return int(rc), (out or b"").decode(errors="replace")


@dataclass
class DockerLab:
    """Containers and networks for one test (or module); removed by id at the end."""

    client: Any
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    containers: list[Any] = field(default_factory=list)
    networks: list[Any] = field(default_factory=list)

    def network(self) -> Any:
        net = self.client.networks.create(f"roleswap-test-{self.tag}-{len(self.networks)}",
                                          driver="bridge", labels={LABEL: self.tag})
        self.networks.append(net)
        return net

    def create(self, image: str, name: str, network: Any | None, **kwargs: Any) -> Any:
        """A created (not started) container; ``name`` is its network alias and hostname."""
        labels = {LABEL: self.tag, **kwargs.pop("labels", {})}
        c = self.client.containers.create(
            image, name=f"roleswap-test-{self.tag}-{name}", hostname=name, labels=labels,
            detach=True, **kwargs)
        self.containers.append(c)
        if network is not None:
            self.client.api.disconnect_container_from_network(c.id, "bridge")
            network.connect(c, aliases=[name])
        return c

    def server(self, flavor: str, name: str, network: Any, server_id: int, role: str,
               source: str | None = None, passwords: dict[str, str] | None = None,
               env: dict[str, str] | None = None, files: dict[str, bytes] | None = None,
               start: bool = True) -> Server:
        """A roleswap/server container with ROLESWAP_ROOT_PASSWORD and 3306 published on
        127.0.0.1 (for the test's own connections); ``files`` are put into /run/secrets."""
        root_pw = f"root-{uuid.uuid4().hex[:12]}"
        environment = {"ROLESWAP_SERVER_ID": str(server_id), "ROLESWAP_ROLE": role,
                       "ROLESWAP_ROOT_PASSWORD": root_pw, **(passwords or {}), **(env or {})}
        if source:
            environment["ROLESWAP_SOURCE"] = source
        c = self.create(SERVER_IMAGE.format(flavor), name, network, environment=environment,
                        ports={"3306/tcp": ("127.0.0.1", None)})
        if files:
            c.put_archive("/run", _tar({f"secrets/{k}": v for k, v in files.items()}, mode=0o444))
        srv = Server(name, c, flavor, root_pw)
        if start:
            c.start()
        return srv

    def start(self, srv: Server) -> None:
        srv.container.start()

    def wait_ready(self, *servers: Server, count: int = 1, timeout: float = 120.0) -> None:
        """Until each server printed the ready line ``count`` times; then its port."""
        deadline = time.monotonic() + timeout
        for srv in servers:
            while srv.ready_count() < count:
                srv.container.reload()
                if srv.container.status in ("exited", "dead"):
                    raise AssertionError(f"{srv.name} exited ({srv.container.attrs['State']['ExitCode']}):\n"
                                         f"{tail(srv.logs())}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{srv.name} not ready after {timeout:g} s:\n{tail(srv.logs())}")
                time.sleep(0.2)
            srv.container.reload()
            srv.port = int(srv.container.ports["3306/tcp"][0]["HostPort"])

    def cleanup(self) -> None:
        for c in reversed(self.containers):
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)
        for n in self.networks:
            with contextlib.suppress(Exception):
                n.remove()
        self.containers.clear()
        self.networks.clear()


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def passwords() -> dict[str, str]:
    """Fresh passwords with the characters SQL quoting must get right."""
    h = uuid.uuid4().hex[:10]
    return {"ROLESWAP_CONTROL_PASSWORD": f"ctl'{h}\\\"x",
            "ROLESWAP_REPL_PASSWORD": f"repl\\'{h};--",
            "ROLESWAP_APP_PASSWORD": f"app ''{h} é"}


def grant_privileges(grant_line: str) -> set[str]:
    """The privileges of a ``GRANT ... ON *.* TO`` line, spelled as the lab constants
    spell them (MariaDB 11.8 prints READ_ONLY ADMIN for READ ONLY ADMIN)."""
    m = re.match(r"GRANT (.+?) ON ", grant_line)
    assert m, grant_line
    return {p.strip().replace("READ_ONLY ADMIN", "READ ONLY ADMIN") for p in m.group(1).split(",")}


@pytest.fixture
def lab(docker_client: Any) -> Iterator[DockerLab]:
    d = DockerLab(docker_client)
    yield d
    d.cleanup()

