"""The compose lab (docker/compose.yaml) end to end, as docker/README.md tells users to run
it: `up --exit-code-from rehearse` swaps db1 -> db2 -> db1 under load and exits 0 with a
report of 0 failed requests and 0 lost writes; `down -v` then leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from typing import Any

import pytest

from tests.containers.conftest import (
    DEMO_IMAGE,
    REDIS_IMAGE,
    REPO,
    ROLESWAP_IMAGE,
    SERVER_IMAGE,
    tail,
)

COMPOSE_FILE = REPO / "docker" / "compose.yaml"


def compose(project: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "-p", project, *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def compose_v2(docker_client: Any) -> str:
    try:
        out = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                             timeout=30, check=False)
    except FileNotFoundError:
        out = None
    if out is None or out.returncode != 0:
        why = "the docker CLI has no compose v2 plugin (`docker compose`); scripts/test provides one"
        if os.environ.get("ROLESWAP_DOCKER_REQUIRED") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return out.stdout.strip()


def test_compose_file_as_compose_reads_it(compose_v2: str) -> None:
    """Start order, the shared network namespace and the passwords, as Compose v2 resolves them."""
    out = compose("roleswap-config-check", "--profile", "tools", "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    services = cfg["services"]
    assert set(services) == {"db1", "db2", "db3", "redis", "app", "rehearse", "roleswap"}
    assert services["roleswap"]["profiles"] == ["tools"]  # not started by `up`
    for replica in ("db2", "db3"):
        env = services[replica]["environment"]
        assert env["ROLESWAP_ROLE"] == "replica" and env["ROLESWAP_SOURCE"] == "db1:3306"
        assert services[replica]["depends_on"]["db1"]["condition"] == "service_healthy"
    assert services["db1"]["environment"]["ROLESWAP_ROLE"] == "primary"
    ids = {services[n]["environment"]["ROLESWAP_SERVER_ID"] for n in ("db1", "db2", "db3")}
    assert ids == {"1", "2", "3"}
    assert {k: v["condition"] for k, v in services["app"]["depends_on"].items()} == {
        n: "service_healthy" for n in ("db1", "db2", "db3", "redis")}
    assert services["rehearse"]["network_mode"] == "service:app"
    assert services["rehearse"]["depends_on"]["app"]["condition"] == "service_healthy"
    # every container that logs in has the same three passwords
    keys = ("ROLESWAP_CONTROL_PASSWORD", "ROLESWAP_REPL_PASSWORD", "ROLESWAP_APP_PASSWORD")
    seen = {tuple(services[n]["environment"][k] for k in keys)
            for n in ("db1", "db2", "db3", "app", "rehearse", "roleswap")}
    assert len(seen) == 1
    # nothing is published on the host; the images are local builds, never pulled
    assert not any(s.get("ports") for s in services.values())
    assert {s.get("pull_policy") for s in services.values()} == {"never"}


@pytest.mark.parametrize("flavor", ["mariadb-10.11", "mysql-9.7"])
def test_compose_lab_swaps_under_load(flavor: str, compose_v2: str, docker_client: Any,
                                      require_images: Any) -> None:
    require_images(SERVER_IMAGE.format(flavor), REDIS_IMAGE, ROLESWAP_IMAGE, DEMO_IMAGE)
    project = f"roleswap-test-{uuid.uuid4().hex[:8]}"
    env = {"ROLESWAP_SERVER": flavor}
    try:
        run = compose(project, "up", "--exit-code-from", "rehearse", "--attach", "rehearse",
                      env=env, timeout=420)
        report = run.stdout
        if run.returncode != 0:
            logs = compose(project, "logs", "--no-color", "--tail", "40", env=env).stdout
            pytest.fail(f"compose up exited {run.returncode} ({compose_v2}):\n{tail(report, 60)}\n"
                        f"{tail(run.stderr, 20)}\n--- logs ---\n{logs}")
        m = re.search(r"requests\s+(\d+) sent .*?, (\d+) held, (\d+) failed", report)
        assert m, report
        sent, _held, failed = (int(g) for g in m.groups())
        assert sent > 500 and failed == 0, report
        m = re.search(r"writes\s+(\d+) acknowledged, (\d+) present on (db\d) .*lost (\d+)", report)
        assert m, report
        assert int(m.group(1)) > 100 and m.group(1) == m.group(2) and m.group(4) == "0", report
        assert m.group(3) == "db1", "two swaps (db1 -> db2 -> db1) end on db1"
        assert re.search(r"replication\s+db1 db2 db3: same CHECKSUM TABLE, .* threads running", report), \
            report
        assert re.search(r"swap db1 -> db2: ok", report) and re.search(r"swap db2 -> db1: ok", report), report
        assert "PASS:" in report and "FAIL" not in report, report
        # the demo passwords of compose.yaml are not printed
        assert "demo-control-password" not in report + run.stderr
    finally:
        down = compose(project, "down", "-v", "--remove-orphans", "--timeout", "30", env=env, timeout=120)
        assert down.returncode == 0, down.stderr
    # nothing of the project is left: containers, networks, volumes
    label = f"com.docker.compose.project={project}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []
    assert docker_client.volumes.list(filters={"label": label}) == []
