"""Gates found by an outside review, each created for real on a module lab (MariaDB 10.11):
replication filters and delays, stopped siblings, metadata-lock holders on --from, and
the control account's privileges by scope.  Every test leaves the lab as it found it
(db1 primary, db2 and db3 replicating, no filter, no delay, no extra account)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from roleswap.lab import lab_down, lab_up
from tests.conftest import RunningLab
from tests.integration.swaphelp import roleswap, snapshot, swap, wait_healthy


@pytest.fixture
def lab(module_lab: RunningLab) -> Iterator[RunningLab]:
    """The module lab, checked healthy around db1 before and after each test."""
    wait_healthy(module_lab, "db1")
    yield module_lab
    wait_healthy(module_lab, "db1")


# -- helpers --------------------------------------------------------------------------
def status(lab: RunningLab, node: str) -> dict[str, Any]:
    conn = lab.root(node)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SHOW ALL SLAVES STATUS")
            return dict(cur.fetchone() or {})
    finally:
        conn.close()


def on_stopped_replica(lab: RunningLab, node: str, *stmts: str) -> None:
    """Run ``stmts`` on ``node`` with its replication stopped, then start it again
    (returns once its IO thread is connected)."""
    lab.query(node, "STOP SLAVE")
    for sql in stmts:
        lab.query(node, sql)
    lab.query(node, "START SLAVE")
    wait_io(lab, node, "Yes")


def port_of(lab: RunningLab, node: str) -> int:
    return lab.config.servers[node].port


def wait_io(lab: RunningLab, node: str, want: str, timeout: float = 10) -> dict[str, Any]:
    """Until ``node``'s IO thread is in state ``want`` (Yes/No): it takes ~15 ms to connect."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(lab, node)
        if st.get("Slave_IO_Running") == want or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def checks(data: dict[str, Any], state: str | None = None) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in data["checks"] if state is None or c["status"] == state}


def check_json(lab: RunningLab | str, *args: str) -> tuple[int, dict[str, Any]]:
    res = roleswap(lab, "--from", "db1", "--to", "db2", "--check", "--json", *args)
    return res.returncode, json.loads(res.stdout.splitlines()[-1])


def refused(lab: RunningLab, *args: str, config: str | None = None) -> dict[str, Any]:
    before = snapshot(lab)
    res = roleswap(config or lab, *args, "--yes", "--json")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
    data: dict[str, Any] = json.loads(res.stdout.splitlines()[-1])
    assert data["error"]["type"] == "PreflightError" and data["error"]["remedy"]
    assert snapshot(lab) == before
    return data


def swapped(lab: RunningLab, source: str, target: str, *extra: str,
            config: str | None = None) -> dict[str, Any]:
    if config is None:
        code, out = swap(lab, source, target, *extra)
    else:
        res = roleswap(config, "--from", source, "--to", target, "--yes", "--json", *extra)
        code, out = res.returncode, json.loads(res.stdout.splitlines()[-1])
    assert code == 0, out
    return out


def write_on(lab: RunningLab, node: str, table: str) -> None:
    lab.query(node, f"CREATE TABLE IF NOT EXISTS {table} (id INT AUTO_INCREMENT PRIMARY KEY, n INT)")
    lab.query(node, f"INSERT INTO {table} (n) VALUES (1)")


# -- 1. filters ------------------------------------------------------------------------------
def test_filter_on_target_refused(lab: RunningLab) -> None:
    on_stopped_replica(lab, "db2", "SET GLOBAL replicate_ignore_table='app.t'")
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        fail = checks(data, "fail")["filters"]
        assert "replicate_ignore_table=app.t" in fail["message"]
        assert "SET GLOBAL replicate_ignore_table=''" in fail["remedy"]
        assert "re-sync" in fail["remedy"]
    finally:
        on_stopped_replica(lab, "db2", "SET GLOBAL replicate_ignore_table=''")


def test_filter_on_source_refused(lab: RunningLab) -> None:
    """A primary has no channel, so SHOW SLAVE STATUS hides its filters; demoted, it
    would apply them to what the new primary sends."""
    lab.query("db1", "SET GLOBAL replicate_ignore_table='app.t'")
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        fail = checks(data, "fail")["source filters"]
        assert "replicate_ignore_table=app.t" in fail["message"]
        assert "silently skip" in fail["message"]
    finally:
        lab.query("db1", "SET GLOBAL replicate_ignore_table=''")


def test_filter_on_sibling_warned_and_kept(lab: RunningLab) -> None:
    on_stopped_replica(lab, "db3", "SET GLOBAL replicate_ignore_table='app.filtered'")
    try:
        out = swapped(lab, "db1", "db2")
        warn = checks(out, "warn")["sibling db3 filters"]
        assert "replicate_ignore_table=app.filtered" in warn["message"]
        assert "keeps filtering" in warn["message"]
        wait_healthy(lab, "db2")
        assert lab.query("db3", "SELECT @@replicate_ignore_table")[0][0] == "app.filtered"
        swapped(lab, "db2", "db1")
    finally:
        on_stopped_replica(lab, "db3", "SET GLOBAL replicate_ignore_table=''")


# -- 1/2. delays -----------------------------------------------------------------------------
def test_delay_on_target_refused(lab: RunningLab) -> None:
    on_stopped_replica(lab, "db2", "CHANGE MASTER TO MASTER_DELAY=30")
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        fail = checks(data, "fail")["delay"]
        assert "SQL_Delay=30s" in fail["message"]
        assert "MASTER_DELAY=0" in fail["remedy"]
    finally:
        on_stopped_replica(lab, "db2", "CHANGE MASTER TO MASTER_DELAY=0")


def test_delayed_sibling_swaps_with_a_note(lab: RunningLab) -> None:
    on_stopped_replica(lab, "db3", "CHANGE MASTER TO MASTER_DELAY=30")
    try:
        write_on(lab, "db1", "app.delayed")  # db3 applies it only 30 s from now
        out = swapped(lab, "db1", "db2", "--catchup-timeout", "3")
        assert "SQL_Delay=30s" in checks(out, "warn")["sibling db3 delay"]["message"]
        assert any("db3" in n and "SQL_Delay=30s" in n for n in out["notes"]), out["notes"]
        verify = next(s for s in out["steps"] if s["name"] == "verify")
        assert "db3 delayed (received)" in verify["detail"]
        st = status(lab, "db3")
        assert int(st["Master_Port"]) == port_of(lab, "db2")
        assert int(st["SQL_Delay"]) == 30
        assert (st["Slave_IO_Running"], st["Slave_SQL_Running"]) == ("Yes", "Yes")
        write_on(lab, "db2", "app.delayed")
        swapped(lab, "db2", "db1", "--catchup-timeout", "3")
        st = status(lab, "db3")
        assert int(st["Master_Port"]) == port_of(lab, "db1") and int(st["SQL_Delay"]) == 30
    finally:
        on_stopped_replica(lab, "db3", "CHANGE MASTER TO MASTER_DELAY=0")
        lab.query("db1", "DROP TABLE IF EXISTS app.delayed")


# -- 3. stopped siblings ---------------------------------------------------------------------
def test_stopped_sibling_stays_stopped_also_after_recover(lab: RunningLab) -> None:
    lab.query("db3", "STOP SLAVE")
    try:
        out = swapped(lab, "db1", "db2")
        st = status(lab, "db3")
        assert int(st["Master_Port"]) == port_of(lab, "db2")
        assert (st["Slave_IO_Running"], st["Slave_SQL_Running"]) == ("No", "No")
        warn = checks(out, "warn")["sibling db3"]["message"]
        assert "stay stopped" in warn and "verify will not wait" in warn
        assert any("db3" in n and "left stopped" in n for n in out["notes"]), out["notes"]
        # killed before repoint; recover re-runs Repoint and Verify from the journal
        code, _ = swap(lab, "db2", "db1", env={"ROLESWAP_KILL_AT": "repoint:before"})
        assert code == -9
        rec = roleswap(lab, "recover", "--yes", "--json")
        assert rec.returncode == 0, rec.stdout + rec.stderr
        st = status(lab, "db3")
        assert int(st["Master_Port"]) == port_of(lab, "db1")
        assert (st["Slave_IO_Running"], st["Slave_SQL_Running"]) == ("No", "No")
    finally:
        lab.query("db3", "START SLAVE")


def test_sibling_with_only_io_running_keeps_only_io(lab: RunningLab) -> None:
    lab.query("db3", "STOP SLAVE SQL_THREAD")
    try:
        out = swapped(lab, "db1", "db2")
        assert "only its IO thread" in checks(out, "warn")["sibling db3"]["message"]
        st = wait_io(lab, "db3", "Yes")
        assert int(st["Master_Port"]) == port_of(lab, "db2")
        assert (st["Slave_IO_Running"], st["Slave_SQL_Running"]) == ("Yes", "No")
        swapped(lab, "db2", "db1")
        st = wait_io(lab, "db3", "Yes")
        assert int(st["Master_Port"]) == port_of(lab, "db1")
        assert st["Slave_SQL_Running"] == "No"
    finally:
        lab.query("db3", "START SLAVE")


@pytest.fixture(scope="module")
def filepos_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    started = lab_up(tmp_path_factory.mktemp("gates-fp") / "lab", gtid=False)
    yield RunningLab(started)
    lab_down(started.dir)


def test_filepos_refuses_stopped_or_delayed_sibling(filepos_lab: RunningLab) -> None:
    """File/position siblings are repointed at coordinates: they must apply the final
    position during the catch-up, which a stopped or delayed one cannot."""
    lab = filepos_lab
    wait_healthy(lab, "db1")
    lab.query("db3", "STOP SLAVE")
    try:
        fail = checks(refused(lab, "--from", "db1", "--to", "db2"), "fail")["sibling db3"]
        assert "file/position" in fail["message"] and "START SLAVE" in fail["remedy"]
    finally:
        lab.query("db3", "START SLAVE")
    on_stopped_replica(lab, "db3", "CHANGE MASTER TO MASTER_DELAY=30")
    try:
        fail = checks(refused(lab, "--from", "db1", "--to", "db2"), "fail")["sibling db3 delay"]
        assert "SQL_Delay=30s" in fail["message"] and "MASTER_DELAY=0" in fail["remedy"]
    finally:
        on_stopped_replica(lab, "db3", "CHANGE MASTER TO MASTER_DELAY=0")
    wait_healthy(lab, "db1")


# -- 4. metadata locks on --from ------------------------------------------------------------
def wait_state(lab: RunningLab, node: str, thread_id: int, state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = lab.query(node, "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID=%s",
                         (thread_id,))
        if rows and state in str(rows[0][0]):
            return
        time.sleep(0.02)
    raise AssertionError(f"thread {thread_id} never reached {state!r}")


def test_running_alter_on_source_warned(lab: RunningLab) -> None:
    """An ALTER queued on a metadata lock (a transaction reads the table): the fence
    would wait behind it.  Sessions of the application account (not root: preflight
    refuses root sessions on --from for another reason)."""
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.gate_alter (id INT PRIMARY KEY)")
    reader, alterer = lab.app("db1"), lab.app("db1")
    with reader.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT * FROM app.gate_alter")
    with alterer.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        alter_id = int(cur.fetchone()[0])  # type: ignore[index]

    def run_alter() -> None:
        with alterer.cursor() as cur:
            cur.execute("ALTER TABLE app.gate_alter ADD COLUMN secretcol INT DEFAULT 4242")

    t = threading.Thread(target=run_alter, daemon=True)
    t.start()
    try:
        wait_state(lab, "db1", alter_id, "metadata lock")
        res = roleswap(lab, "--from", "db1", "--to", "db2", "--check", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        warn = checks(json.loads(res.stdout.splitlines()[-1]))["locks"]
        assert warn["status"] == "warn", warn
        user = lab.config.lab.app_user if lab.config.lab else "app"
        assert f"thread {alter_id} (user {user}): ALTER TABLE app.gate_alter" in warn["message"]
        assert "waiting for table metadata lock" in warn["message"]
        assert "--fence-timeout (2s)" in warn["remedy"] and "rolls the swap back" in warn["remedy"]
        assert "4242" not in res.stdout and "secretcol" not in res.stdout  # never values
        time.sleep(2.1)  # PROCESSLIST TIME is whole seconds: now surely > 1 s
        data = refused(lab, "--from", "db1", "--to", "db2", "--long-trx", "1")
        fail = checks(data, "fail")["locks"]
        assert f"KILL {alter_id}" in fail["remedy"]
    finally:
        reader.rollback()
        t.join(10)
        reader.close()
        alterer.close()
        lab.query("db1", "DROP TABLE IF EXISTS app.gate_alter")


def test_lock_tables_holder_on_source_warned(lab: RunningLab) -> None:
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.gate_locked (id INT PRIMARY KEY)")
    holder = lab.app("db1")
    plugin = bool(lab.query("db1", "SHOW PLUGINS SONAME 'metadata_lock_info.so'"))
    installed = False
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES app.gate_locked WRITE")
            cur.execute("SELECT CONNECTION_ID()")
            holder_id = int(cur.fetchone()[0])  # type: ignore[index]
        # MariaDB's default: no lock instrumentation, the table is named, not the thread
        code, data = check_json(lab)
        warn = checks(data)["locks"]
        assert code == 0 and warn["status"] == "warn", warn
        assert "holds app.gate_locked (probably LOCK TABLES)" in warn["message"]
        assert "metadata_lock_info" in warn["remedy"]
        if plugin:  # with the plugin loaded the holder is named
            conn = lab.root("db1")
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin=0")
                cur.execute("INSTALL SONAME 'metadata_lock_info'")
            conn.close()
            installed = True
            code, data = check_json(lab)
            warn = checks(data)["locks"]
            user = lab.config.lab.app_user if lab.config.lab else "app"
            assert (f"thread {holder_id} (user {user}): LOCK TABLES ... WRITE on app.gate_locked"
                    in warn["message"]), warn
    finally:
        with holder.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        holder.close()
        if installed:
            conn = lab.root("db1")
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin=0")
                cur.execute("UNINSTALL SONAME 'metadata_lock_info'")
            conn.close()
        lab.query("db1", "DROP TABLE IF EXISTS app.gate_locked")


# -- 5. privileges by scope -------------------------------------------------------------------
def accounts(lab: RunningLab, *stmts: str) -> None:
    """Run account statements on every node, out of the binlog (like the lab does)."""
    for n in ("db1", "db2", "db3"):
        conn = lab.root(n)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin=0")
                for sql in stmts:
                    cur.execute(sql)
        finally:
            conn.close()


def config_as(lab: RunningLab, tmp_path: Path, user: str, password: str) -> str:
    """A copy of the lab's config that logs in as ``user``."""
    text = lab.config_path.read_text()
    head, rest = text.split("[mysql]", 1)
    _body, tail = rest.split("\n\n", 1)
    cfg = tmp_path / f"{user}.toml"
    cfg.write_text(head + f'[mysql]\nuser = "{user}"\npassword = "{password}"\n\n' + tail)
    return str(cfg)


MINIMAL = ("READ ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR, BINLOG MONITOR, "
           "PROCESS, CONNECTION ADMIN")


@pytest.mark.parametrize(("grants", "missing"), [
    # ALL on roleswap.* and nothing global: the topology cannot even be read
    (("GRANT ALL ON roleswap.* TO 'g'@'%'",), MINIMAL),
    # the review's case: ALL on roleswap.* passed a substring check, then the fence failed (1227)
    (("GRANT SELECT, SLAVE MONITOR, BINLOG MONITOR ON *.* TO 'g'@'%'",
      "GRANT ALL ON roleswap.* TO 'g'@'%'"),
     "READ ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, PROCESS, CONNECTION ADMIN"),
    # everything the lab's control account has, but READ ONLY ADMIN
    (("GRANT SELECT, RELOAD, PROCESS, SUPER, REPLICATION SLAVE, BINLOG MONITOR, "
      "REPLICATION MASTER ADMIN, REPLICATION SLAVE ADMIN, SLAVE MONITOR, CONNECTION ADMIN, "
      "BINLOG ADMIN ON *.* TO 'g'@'%'", "GRANT ALL ON roleswap.* TO 'g'@'%'"), "READ ONLY ADMIN"),
    # ... but PROCESS
    (("GRANT READ ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR, BINLOG MONITOR, "
      "CONNECTION ADMIN ON *.* TO 'g'@'%'", "GRANT ALL ON roleswap.* TO 'g'@'%'"), "PROCESS"),
], ids=["all-on-db-only", "all-on-db-plus-monitors", "no-read-only-admin", "no-process"])
def test_control_account_refused(lab: RunningLab, tmp_path: Path, grants: tuple[str, ...],
                                 missing: str) -> None:
    accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "CREATE USER 'g'@'%' IDENTIFIED BY 'gpw'", *grants)
    try:
        data = refused(lab, "--from", "db1", "--to", "db2", config=config_as(lab, tmp_path, "g", "gpw"))
        fail = checks(data, "fail")["privileges db1"]
        for priv in missing.split(", "):
            assert priv in fail["message"], (priv, fail)
        assert fail["remedy"] == f"on db1 run: GRANT {missing} ON *.* TO `g`@`%`"
        if "ALL ON roleswap" in " ".join(grants):
            assert "ON `roleswap`.* do not count" in fail["message"]
    finally:
        accounts(lab, "DROP USER IF EXISTS 'g'@'%'")


def test_minimal_control_account_swaps(lab: RunningLab, tmp_path: Path) -> None:
    """Exactly the documented list is enough for a whole swap and back."""
    accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "CREATE USER 'g'@'%' IDENTIFIED BY 'gpw'",
             f"GRANT {MINIMAL} ON *.* TO 'g'@'%'")
    cfg = config_as(lab, tmp_path, "g", "gpw")
    try:
        code, data = check_json(cfg)
        assert code == 0, data
        assert checks(data)["privileges db1"]["status"] == "ok"
        swapped(lab, "db1", "db2", config=cfg)
        wait_healthy(lab, "db2")
        swapped(lab, "db2", "db1", config=cfg)
    finally:
        accounts(lab, "DROP USER IF EXISTS 'g'@'%'")


def test_privileges_through_a_default_role_count(lab: RunningLab, tmp_path: Path) -> None:
    accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "DROP ROLE IF EXISTS gate_role",
             "CREATE USER 'g'@'%' IDENTIFIED BY 'gpw'", "CREATE ROLE gate_role",
             "GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO 'g'@'%'",
             f"GRANT {MINIMAL} ON *.* TO gate_role", "GRANT gate_role TO 'g'@'%'")
    cfg = config_as(lab, tmp_path, "g", "gpw")
    try:
        data = refused(lab, "--from", "db1", "--to", "db2", config=cfg)
        fail = checks(data, "fail")["privileges db1"]
        assert "gate_role are granted but not active" in fail["message"]
        accounts(lab, "SET DEFAULT ROLE gate_role FOR 'g'@'%'")
        code, data = check_json(cfg)
        assert code == 0 and checks(data)["privileges db1"]["status"] == "ok", data
    finally:
        accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "DROP ROLE IF EXISTS gate_role")
