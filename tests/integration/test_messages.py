"""Messages that match their real cause, each cause created for real on a lab.

A refused login is not "unreachable"; a non-latin-1 password logs in; a lost
connection is named with its server; a Redis problem points at roleswap's config,
not at intermission's options; a swap that is running is not "interrupted".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from roleswap.coord.keys import lock_key
from roleswap.errors import ServerError
from roleswap.lab import procs
from roleswap.lab.engines import engine_for
from roleswap.lab.redis_server import RedisServer
from roleswap.swap.context import SwapContext, SwapOptions
from tests.conftest import RunningLab
from tests.integration.swaphelp import ROLESWAP, roleswap, snapshot, wait_healthy

NODES = ("db1", "db2", "db3")
Stmt = tuple[str, tuple[object, ...] | None]


@pytest.fixture
def lab(module_lab: RunningLab) -> Iterator[RunningLab]:
    """The module's own lab, healthy around db1 before and after each test."""
    wait_healthy(module_lab, "db1")
    yield module_lab
    wait_healthy(module_lab, "db1")


def variant(lab: RunningLab, tmp: Path, name: str, *, mysql: tuple[str, str] | None = None,
            repl_password: str | None = None, redis_url: str | None = None,
            extra: str = "") -> str:
    """A copy of the lab's config with other [mysql] credentials / repl password / Redis URL,
    its own journal directory, and ``extra`` appended."""
    text = lab.config_path.read_text()
    head, rest = text.split("[mysql]", 1)
    body, tail = rest.split("[replication]", 1)
    if mysql is not None:
        body = re.sub(r'^user = ".*"$', f"user = {json.dumps(mysql[0])}", body, flags=re.M)
        body = re.sub(r'^password = ".*"$', f"password = {json.dumps(mysql[1], ensure_ascii=False)}",
                      body, flags=re.M)
    if repl_password is not None:
        tail = re.sub(r'^password = ".*"$', f"password = {json.dumps(repl_password, ensure_ascii=False)}",
                      tail, count=1, flags=re.M)
    text = head + "[mysql]" + body + "[replication]" + tail
    if redis_url is not None:
        text = re.sub(r'^url = ".*"$', f"url = {json.dumps(redis_url)}", text, flags=re.M)
    text = re.sub(r'^(\[journal\].*\n)dir = ".*"$', rf'\1dir = {json.dumps(str(tmp / "journal"))}',
                  text, flags=re.M)
    path = tmp / f"{name}.toml"
    path.write_text(text + extra, encoding="utf-8")
    os.chmod(path, 0o600)
    return str(path)


def on_every_node(lab: RunningLab, *stmts: Stmt) -> None:
    """Run statements as root on every node, outside the binlog (no errant GTIDs)."""
    for n in NODES:
        lab.write_through_fence(n, "SET NAMES utf8mb4", "SET SESSION sql_log_bin=0", *stmts)


def control_account(lab: RunningLab, user: str, password: str, plugin: str = "") -> list[Stmt]:
    """Statements creating a control account like the lab's own (its flavor's grants),
    with ``password``."""
    grants = engine_for(lab.lab.node("db1").kind).control_grants
    how = f"IDENTIFIED VIA {plugin} USING PASSWORD(%s)" if plugin else "IDENTIFIED BY %s"
    return [(f"CREATE USER IF NOT EXISTS %s@'%%' {how}", (user, password)),
            (f"GRANT {grants} ON *.* TO %s@'%%'", (user,)),
            ("GRANT ALL ON `roleswap`.* TO %s@'%%'", (user,))]


# -- a refused login is "access denied", not "unreachable" -------------------------------
def test_wrong_password_is_reported_as_access_denied(lab: RunningLab, tmp_path: Path) -> None:
    wrong = "not-the-password-4711"
    cfg = variant(lab, tmp_path, "wrong", mysql=(lab.config.mysql.user, wrong))
    res = roleswap(cfg, "--from", "db1", "--to", "db2", "--check", "--json")
    assert res.returncode == 3, res.stdout + res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    reach = checks["reach db1"]
    assert reach["message"].startswith("the control account was refused by db1 (access denied)"), reach
    assert "check [mysql] user/password in " + cfg in reach["remedy"]
    assert "reachable" not in reach["message"] + reach["remedy"]
    st = roleswap(cfg, "status")
    assert "access denied" in st.stdout and "unreachable" not in st.stdout, st.stdout
    for out in (res.stdout + res.stderr, st.stdout + st.stderr):
        assert wrong not in out and lab.config.mysql.password.reveal() not in out


def test_unreachable_server_stays_unreachable(lab: RunningLab, tmp_path: Path) -> None:
    port = procs.free_port()
    cfg = variant(lab, tmp_path, "ghost", extra=f'\n[servers.ghost]\nhost = "127.0.0.1"\nport = {port}\n')
    res = roleswap(cfg, "--from", "db1", "--to", "ghost", "--check", "--json")
    assert res.returncode == 3
    reach = {c["name"]: c for c in json.loads(res.stdout)["checks"]}["reach ghost"]
    assert reach["message"].startswith("ghost is unreachable"), reach
    assert "up and reachable" in reach["remedy"]


def test_other_server_errors_name_their_code(lab: RunningLab, tmp_path: Path) -> None:
    """An account that logs in but may not read replication status: error 1227, named."""
    on_every_node(lab, ("CREATE USER IF NOT EXISTS 'rs_weak'@'%%' IDENTIFIED BY %s", ("weak-pw",)),
                  ("GRANT SELECT ON *.* TO 'rs_weak'@'%'", None))
    try:
        cfg = variant(lab, tmp_path, "weak", mysql=("rs_weak", "weak-pw"))
        res = roleswap(cfg, "--from", "db1", "--to", "db2", "--check", "--json")
        assert res.returncode == 3
        reach = {c["name"]: c for c in json.loads(res.stdout)["checks"]}["reach db1"]
        assert reach["message"].startswith("db1 could not be read (error 1227"), reach
        assert "grant the control account" in reach["remedy"]
        assert "unreachable" not in reach["message"] and "access denied)" not in reach["message"]
    finally:
        on_every_node(lab, ("DROP USER IF EXISTS 'rs_weak'@'%'", None))


# -- passwords beyond latin-1 ---------------------------------------------------------
@pytest.mark.parametrize("user,password,plugin", [
    ("rs_uni", "pässwörd-密码-ü", ""),      # not latin-1 at all: a codec error before the fix
    ("rs_lat", "pässwörd-ü", ""),           # latin-1, but the server hashed its UTF-8 bytes
    ("rs_ed", "ëd25519-密码", "ed25519"),    # another auth plugin
])
def test_non_latin1_control_password_works(lab: RunningLab, tmp_path: Path, user: str,
                                           password: str, plugin: str) -> None:
    if plugin and lab.dialect("db1").flavor != "mariadb":
        pytest.skip(f"auth_{plugin} is a MariaDB plugin")
    if plugin:
        for n in NODES:
            if not lab.query(n, "SELECT 1 FROM information_schema.PLUGINS WHERE PLUGIN_NAME=%s "
                             "AND PLUGIN_STATUS='ACTIVE'", (plugin,)):
                on_every_node(lab, (f"INSTALL SONAME 'auth_{plugin}'", None))
                break
    on_every_node(lab, *control_account(lab, user, password, plugin))
    try:
        cfg = variant(lab, tmp_path, user, mysql=(user, password))
        st = roleswap(cfg, "status", "--json")
        assert st.returncode == 0, st.stdout + st.stderr
        data = json.loads(st.stdout)
        assert [r["name"] for r in data["servers"] if not r["reachable"]] == [], data["servers"]
        assert data["writable"] == ["db1"]
        res = roleswap(cfg, "--from", "db1", "--to", "db2", "--check")
        assert res.returncode == 0, res.stdout + res.stderr
        assert password not in st.stdout + res.stdout + res.stderr
    finally:
        on_every_node(lab, ("DROP USER IF EXISTS %s@'%%'", (user,)))


def test_swap_with_non_ascii_control_and_replication_passwords(lab: RunningLab, tmp_path: Path) -> None:
    """Every connection of a real swap (control sessions, CHANGE MASTER for the demoted
    primary and the repointed sibling) with passwords outside latin-1."""
    user, password, repl_pw = "rs_uni2", "контроль-密码-ü", "répl-密码-ü"
    old_repl = lab.config.replication.password.reveal()
    on_every_node(lab, *control_account(lab, user, password),
                  ("ALTER USER %s@'%%' IDENTIFIED BY %s", (lab.config.replication.user, repl_pw)))
    cfg = variant(lab, tmp_path, "uni", mysql=(user, password), repl_password=repl_pw)
    try:
        for source, target in (("db1", "db2"), ("db2", "db1")):
            res = roleswap(cfg, "--from", source, "--to", target, "--yes", "--switch", "none")
            assert res.returncode == 0, res.stdout + res.stderr
            wait_healthy(lab, target)
            assert password not in res.stdout + res.stderr and repl_pw not in res.stdout + res.stderr
    finally:
        on_every_node(lab, ("ALTER USER %s@'%%' IDENTIFIED BY %s", (lab.config.replication.user, old_repl)),
                      ("DROP USER IF EXISTS %s@'%%'", (user,)))
        # replicas now hold the non-ASCII password: point them back with the lab's own
        for n in ("db2", "db3"):
            if lab.replica(n) is not None:
                lab.stop_replica(n)
                lab.change_source(n, PASSWORD=old_repl)
                lab.start_replica(n)


# -- a connection lost mid-step is named with its server -------------------------------
def _kill_control_sessions(lab: RunningLab, node: str, user: str) -> int:
    ids = [r[0] for r in lab.query(node, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER=%s",
                                   (user,))]
    for i in ids:
        lab.query(node, f"KILL CONNECTION {int(i)}")
    return len(ids)


def test_lost_connection_is_a_server_error_naming_the_server(lab: RunningLab) -> None:
    ctx = SwapContext(lab.config, "db1", "db2", SwapOptions())
    try:
        ctx.conn("db1")  # opened (as preflight does), then lost before the first dialect query
        assert _kill_control_sessions(lab, "db1", lab.config.mysql.user) >= 1
        with pytest.raises(ServerError) as err:
            ctx.dialect("db1")
        assert err.value.message.startswith("db1 (") and err.value.kind == "lost", err.value.message
        assert "db1" in err.value.remedy
    finally:
        ctx.close()


def test_lost_connection_mid_swap_names_the_server(lab: RunningLab) -> None:
    """A real swap whose control sessions are killed while it waits for confirmation."""
    before = snapshot(lab)
    proc = subprocess.Popen([*ROLESWAP, "-c", str(lab.config_path), "--from", "db1", "--to", "db2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    seen = b""
    while b"Swap roles" not in seen:
        ch = proc.stdout.read(1)
        assert ch, seen.decode(errors="replace")
        seen += ch
    for n in ("db1", "db2"):
        _kill_control_sessions(lab, n, lab.config.mysql.user)
    out, err = proc.communicate(b"y\n", timeout=60)
    text = out.decode() + err.decode()
    assert proc.returncode == 4, text
    failed = [line for line in text.splitlines() if " failed " in line]
    assert failed and re.search(r"db[12] \(", failed[0]), text
    assert not re.search(r"^\s*\S+\s+failed\s+[\d.]+ ms\s+OperationalError", text, re.M), text
    assert snapshot(lab) == before


# -- Redis problems point at roleswap's config ------------------------------------------
INTERMISSION_OPTIONS = ("--redis", "INTERMISSION_REDIS_URL")


def test_redis_lost_before_the_pause_names_the_config(lab: RunningLab, fresh_redis: RedisServer,
                                                      tmp_path: Path) -> None:
    """Redis dies while the swap waits in pre-sync (the target's SQL thread is held by a
    table lock): the pause step must fail in roleswap's terms and roll back cleanly."""
    cfg = variant(lab, tmp_path, "redis", redis_url=fresh_redis.url)
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.rs_msg (id INT PRIMARY KEY)")
    assert lab.wait_gtid("db2", lab.gtid_position("db1"), 10)
    # (MySQL: LOCK TABLES ... WRITE is refused under super_read_only, even to root)
    with lab.root_through_fence("db2"):
        holder = lab.root("db2")
        try:
            with holder.cursor() as cur:
                cur.execute("LOCK TABLES app.rs_msg WRITE")  # the SQL thread will wait on it
            lab.query("db1", "REPLACE INTO app.rs_msg VALUES (1)")
            client = redis.Redis.from_url(fresh_redis.url)
            result: dict[str, subprocess.CompletedProcess[str]] = {}
            t = threading.Thread(target=lambda: result.update(res=roleswap(
                cfg, "--from", "db1", "--to", "db2", "--yes", "--json", "--catchup-timeout", "30")))
            t.start()
            deadline = time.monotonic() + 30
            while client.get(lock_key(lab.config.cluster)) is None:  # the swap is in pre-sync now
                assert time.monotonic() < deadline and t.is_alive(), result
                time.sleep(0.01)
            fresh_redis.stop()
        finally:
            holder.close()  # releases the table lock: pre-sync completes, then the pause runs
        t.join(60)
    res = result["res"]
    data = json.loads(res.stdout.splitlines()[-1])
    assert res.returncode == 4, res.stdout + res.stderr
    msg, remedy = data["error"]["message"], data["error"]["remedy"]
    assert "could not pause traffic" in msg and fresh_redis.url.split("@")[-1].split("/")[2] in msg
    assert f"[redis] url in {cfg}" in msg + remedy, data["error"]
    assert not any(o in res.stdout + res.stderr for o in INTERMISSION_OPTIONS), data["error"]
    steps = {s["name"]: s["status"] for s in data["steps"]}
    assert steps["lock"] == "undone", data["steps"]  # not "undo-failed": the lock expires by itself
    wait_healthy(lab, "db1")
    lab.query("db1", "DROP TABLE IF EXISTS app.rs_msg")


def test_redis_down_in_preflight_and_status_names_the_config(lab: RunningLab, tmp_path: Path) -> None:
    port = procs.free_port()
    cfg = variant(lab, tmp_path, "noredis", redis_url=f"redis://:pw-4711@127.0.0.1:{port}/0")
    res = roleswap(cfg, "--from", "db1", "--to", "db2", "--check", "--json")
    assert res.returncode == 3
    check = {c["name"]: c for c in json.loads(res.stdout)["checks"]}["redis"]
    assert f"check [redis] url in {cfg}" in check["remedy"], check
    st = roleswap(cfg, "status")
    assert f"check [redis] url in {cfg}" in st.stdout, st.stdout
    for out in (res.stdout + res.stderr, st.stdout + st.stderr):
        assert "pw-4711" not in out
        assert not any(o in out for o in INTERMISSION_OPTIONS)


# -- a running swap is not an interrupted one --------------------------------------------
WAIT_HOOK = """#!{python}
import os, time
d = {dir!r}
open(os.path.join(d, "STARTED"), "w").close()
t = time.monotonic()
while not os.path.exists(os.path.join(d, "GO")) and time.monotonic() - t < 30:
    time.sleep(0.01)
"""


def test_concurrent_swap_is_told_the_other_is_running(lab: RunningLab, tmp_path: Path) -> None:
    hook = tmp_path / "wait.py"
    hook.write_text(WAIT_HOOK.format(python=sys.executable, dir=str(tmp_path)))
    hook.chmod(0o755)
    cfg = variant(lab, tmp_path, "hook", extra=f'\n[hooks]\nbefore_fence = "{hook}"\n')
    cfg_text = Path(cfg).read_text().replace('method = "endpoint"', 'method = "hook"')
    Path(cfg).write_text(cfg_text)
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    t = threading.Thread(target=lambda: result.update(a=roleswap(cfg, "--from", "db1", "--to", "db2",
                                                                  "--yes", "--json")))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "STARTED").exists():
            assert time.monotonic() < deadline and t.is_alive(), result
            time.sleep(0.01)
        b = roleswap(cfg, "--from", "db1", "--to", "db3", "--yes", "--json")
        st = roleswap(cfg, "status")
        health = roleswap(cfg, "status", "--check-health")
    finally:
        (tmp_path / "GO").touch()
        t.join(60)
    try:
        assert result["a"].returncode == 0, result["a"].stdout + result["a"].stderr
        swap_a = json.loads(result["a"].stdout)["swap_id"]
        assert b.returncode == 3, b.stdout + b.stderr
        journal = {c["name"]: c for c in json.loads(b.stdout)["checks"]}["journal"]
        assert "is running now" in journal["message"] and "interrupted" not in journal["message"], journal
        assert swap_a in journal["message"] and f"pid {os.getpid()}" not in journal["message"]
        assert re.search(r"pid \d+, since \d\d:\d\d:\d\d", journal["message"]), journal
        assert "recover" not in journal["remedy"].replace("do not run `roleswap recover`", "")
        assert f"SWAP IN PROGRESS: swap {swap_a}" in st.stdout and "INTERRUPTED" not in st.stdout, st.stdout
        assert health.returncode == 0, health.stdout  # a running swap is not a health problem
        assert "in progress" in health.stdout
    finally:  # leave db1 the primary whatever happened
        wait_healthy(lab, "db2")
        assert roleswap(cfg, "--from", "db2", "--to", "db1", "--yes", "--switch", "none").returncode == 0


def test_killed_swap_is_reported_as_interrupted(lab: RunningLab, tmp_path: Path) -> None:
    cfg = variant(lab, tmp_path, "kill")
    res = roleswap(cfg, "--from", "db1", "--to", "db2", "--yes", env={"ROLESWAP_KILL_AT": "demote:after"})
    assert res.returncode == -9
    b = roleswap(cfg, "--from", "db2", "--to", "db1", "--yes", "--json")
    journal = {c["name"]: c for c in json.loads(b.stdout)["checks"]}["journal"]
    assert "was interrupted" in journal["message"] and "running now" not in journal["message"]
    assert "roleswap recover" in journal["remedy"]
    st = roleswap(cfg, "status")
    assert "INTERRUPTED SWAP" in st.stdout and "IN PROGRESS" not in st.stdout, st.stdout
    health = roleswap(cfg, "status", "--check-health")
    assert health.returncode == 8 and "interrupted swap" in health.stdout, health.stdout
    rec = roleswap(cfg, "recover", "--yes")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    wait_healthy(lab, "db2")
    assert roleswap(cfg, "--from", "db2", "--to", "db1", "--yes").returncode == 0
