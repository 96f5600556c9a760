"""The roleswap image as a runbook in CI runs it: a containerised three-node cluster and
Redis on a user network, `docker run --network NET -v CFG:/cfg roleswap/roleswap -c
/cfg/roleswap.toml --from db1 --to db2 --yes`, then proof from outside: exactly one
writable server (db2), the others replicate from it, and a new write reaches them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.containers.conftest import (
    FLAVORS,
    REDIS_IMAGE,
    ROLESWAP_IMAGE,
    SERVER_IMAGE,
    DockerLab,
    Server,
    passwords,
    wait_until,
)

CONFIG = """\
cluster = "ci"

[mysql]
user = "roleswap"
password_env = "ROLESWAP_CONTROL_PASSWORD"
connect_timeout = 2

[replication]
user = "repl"
password_env = "ROLESWAP_REPL_PASSWORD"

[redis]
url = "redis://redis:6379/0"

[switch]
method = "endpoint"

[servers.db1]
host = "db1"

[servers.db2]
host = "db2"

[servers.db3]
host = "db3"
"""


def run_roleswap(lab: DockerLab, network: Any, cfg_dir: Path, env: dict[str, str],
                 *args: str) -> tuple[int, str, str]:
    """``docker run --rm --network NET -v CFG:/cfg:ro roleswap/roleswap -c /cfg/roleswap.toml ARGS``;
    (exit status, stdout, stderr)."""
    c = lab.create(ROLESWAP_IMAGE, f"roleswap{len(lab.containers)}", network, environment=env,
                   command=["-c", "/cfg/roleswap.toml", *args],
                   volumes={str(cfg_dir): {"bind": "/cfg", "mode": "ro"}})
    c.start()
    rc = int(c.wait(timeout=180)["StatusCode"])
    out = c.logs(stdout=True, stderr=False).decode(errors="replace")
    err = c.logs(stdout=False, stderr=True).decode(errors="replace")
    c.remove(force=True)
    lab.containers.remove(c)
    return rc, out, err


@pytest.mark.parametrize("flavor", FLAVORS)
def test_swap_with_the_roleswap_image(flavor: str, lab: DockerLab, require_images: Any,
                                      tmp_path: Path) -> None:
    require_images(SERVER_IMAGE.format(flavor), REDIS_IMAGE, ROLESWAP_IMAGE)
    net = lab.network()
    pw = passwords()
    redis = lab.create(REDIS_IMAGE, "redis", net)
    redis.start()
    db1 = lab.server(flavor, "db1", net, 1, "primary", passwords=pw)
    db2 = lab.server(flavor, "db2", net, 2, "replica", source="db1", passwords=pw)
    db3 = lab.server(flavor, "db3", net, 3, "replica", source="db1", passwords=pw)
    t0 = time.monotonic()
    lab.wait_ready(db1, db2, db3)
    started = time.monotonic() - t0
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "roleswap.toml").write_text(CONFIG)
    (cfg_dir / "roleswap.toml").chmod(0o644)  # the image runs as uid 10001
    env = {k: v for k, v in pw.items() if k != "ROLESWAP_APP_PASSWORD"}

    rc, out, err = run_roleswap(lab, net, cfg_dir, env, "--from", "db1", "--to", "db2", "--yes", "--json")
    assert rc == 0, f"roleswap exited {rc} (cluster up in {started:.1f} s):\n{out}\n{err}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["ok"] is True and not result.get("rolled_back"), result
    for secret in pw.values():
        assert secret not in out and secret not in err

    servers = {"db1": db1, "db2": db2, "db3": db3}
    writable = [n for n, s in servers.items() if s.query("SELECT @@GLOBAL.read_only AS ro")[0]["ro"] == 0]
    assert writable == ["db2"]
    for name in ("db1", "db3"):
        srv = servers[name]
        wait_until(srv.threads_running, 20, f"{name}'s replication threads")
        assert srv.source_host() == "db2", srv.replica()
        if srv.engine == "mysql":
            assert srv.query("SELECT @@GLOBAL.super_read_only AS s")[0]["s"] == 1
    assert db2.replica() is None

    # a write through the new primary reaches both replicas
    conn = pymysql.connect(host="127.0.0.1", port=db2.port, user="app",
                           password=pw["ROLESWAP_APP_PASSWORD"].encode(), database="app",
                           autocommit=True, connect_timeout=5, ssl_disabled=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE after_swap (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO after_swap VALUES (42)")
    finally:
        conn.close()
    for srv in (db1, db3):
        wait_until(lambda s=srv: _has_row(s), 20, f"the write on {srv.name}")

    # and roleswap itself finds the cluster healthy (exit 8 if not)
    rc, out, err = run_roleswap(lab, net, cfg_dir, env, "status", "--check-health")
    assert rc == 0, f"status --check-health exited {rc}:\n{out}\n{err}"


def _has_row(srv: Server) -> bool:
    tables = srv.query("SELECT COUNT(*) AS n FROM information_schema.tables "
                       "WHERE table_schema = 'app' AND table_name = 'after_swap'")
    return bool(tables[0]["n"]) and srv.query("SELECT id FROM app.after_swap") == [{"id": 42}]
