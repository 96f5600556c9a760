"""Gates found by an outside review, each created for real on a module lab (any server
flavor: every statement is the node's dialect's): replication filters and delays,
stopped siblings, metadata-lock holders on --from, and the control account's
privileges by scope.  Every test leaves the lab as it found it (db1 primary, db2 and
db3 replicating, no filter, no delay, no extra account)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roleswap.lab import lab_down
from roleswap.mysql.dialect import ReplicaStatus, Stmt
from roleswap.mysql.grants import Need, control_needs
from roleswap.mysql.replica_status import filter_setting
from tests.conftest import RunningLab, start_lab
from tests.integration.swaphelp import roleswap, snapshot, swap, wait_healthy


@pytest.fixture
def lab(module_lab: RunningLab) -> Iterator[RunningLab]:
    """The module lab, checked healthy around db1 before and after each test."""
    wait_healthy(module_lab, "db1")
    yield module_lab
    wait_healthy(module_lab, "db1")


# -- helpers --------------------------------------------------------------------------
def status(lab: RunningLab, node: str) -> ReplicaStatus:
    r = lab.replica(node)
    assert r is not None, f"{node} is not a replica"
    return r


def on_stopped_replica(lab: RunningLab, node: str, *stmts: Stmt) -> None:
    """Run ``stmts`` on ``node`` with its replication stopped, then start it again
    (returns once its IO thread is connected)."""
    lab.stop_replica(node)
    lab.run(node, list(stmts))
    lab.start_replica(node)
    wait_io(lab, node, "Yes")


def delay(lab: RunningLab, node: str, seconds: int) -> Stmt:
    """MASTER_DELAY / SOURCE_DELAY as ``node`` spells it."""
    d = lab.dialect(node)
    return f"{d.change_source_sql} {d.kw}_DELAY=%s", (seconds,)


def delay_off_text(lab: RunningLab, node: str) -> str:
    return f"{lab.dialect(node).kw}_DELAY=0"


IGNORE_TABLE = "Replicate_Ignore_Table"


def ignore_table(lab: RunningLab, node: str, *tables: str) -> Stmt:
    """Filter ``tables`` on ``node`` (none: clear the filter), as its flavor sets it."""
    d = lab.dialect(node)
    setting = filter_setting(IGNORE_TABLE, d.flavor)
    if not tables:
        return d.clear_filter_hint(setting), ()
    return d.set_filter(setting, tables)


def port_of(lab: RunningLab, node: str) -> int:
    return lab.config.servers[node].port


def wait_io(lab: RunningLab, node: str, want: str, timeout: float = 10) -> ReplicaStatus:
    """Until ``node``'s IO thread is in state ``want`` (Yes/No): it takes ~15 ms to connect."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(lab, node)
        if st.io_state == want or time.monotonic() > deadline:
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
    on_stopped_replica(lab, "db2", ignore_table(lab, "db2", "app.t"))
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        fail = checks(data, "fail")["filters"]
        assert "replicate_ignore_table=app.t" in fail["message"].lower()
        assert ignore_table(lab, "db2")[0] in fail["remedy"]
        assert "re-sync" in fail["remedy"]
    finally:
        on_stopped_replica(lab, "db2", ignore_table(lab, "db2"))


def test_filter_on_source_refused(lab: RunningLab) -> None:
    """A primary has no channel, so SHOW SLAVE STATUS hides its filters; demoted, it
    would apply them to what the new primary sends."""
    lab.run("db1", [ignore_table(lab, "db1", "app.t")])
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        fail = checks(data, "fail")["source filters"]
        assert "replicate_ignore_table=app.t" in fail["message"].lower()
        assert "silently skip" in fail["message"]
        assert ignore_table(lab, "db1")[0] in fail["remedy"]
    finally:
        lab.run("db1", [ignore_table(lab, "db1")])


def test_filter_on_sibling_warned_and_kept(lab: RunningLab) -> None:
    on_stopped_replica(lab, "db3", ignore_table(lab, "db3", "app.filtered"))
    try:
        out = swapped(lab, "db1", "db2")
        warn = checks(out, "warn")["sibling db3 filters"]
        assert "replicate_ignore_table=app.filtered" in warn["message"].lower()
        assert "keeps filtering" in warn["message"]
        wait_healthy(lab, "db2")
        assert (IGNORE_TABLE, "app.filtered") in status(lab, "db3").filters
        swapped(lab, "db2", "db1")
    finally:
        on_stopped_replica(lab, "db3", ignore_table(lab, "db3"))


# -- 1/2. delays -----------------------------------------------------------------------------
def test_delay_on_target_refused(lab: RunningLab) -> None:
    on_stopped_replica(lab, "db2", delay(lab, "db2", 30))
    try:
        data = refused(lab, "--from", "db1", "--to", "db2")
        fail = checks(data, "fail")["delay"]
        assert "SQL_Delay=30s" in fail["message"]
        assert delay_off_text(lab, "db2") in fail["remedy"]
    finally:
        on_stopped_replica(lab, "db2", delay(lab, "db2", 0))


def test_delayed_sibling_swaps_with_a_note(lab: RunningLab) -> None:
    on_stopped_replica(lab, "db3", delay(lab, "db3", 30))
    try:
        write_on(lab, "db1", "app.delayed")  # db3 applies it only 30 s from now
        out = swapped(lab, "db1", "db2", "--catchup-timeout", "3")
        assert "SQL_Delay=30s" in checks(out, "warn")["sibling db3 delay"]["message"]
        assert any("db3" in n and "SQL_Delay=30s" in n for n in out["notes"]), out["notes"]
        verify = next(s for s in out["steps"] if s["name"] == "verify")
        assert "db3 delayed (received)" in verify["detail"]
        st = status(lab, "db3")
        assert st.source_port == port_of(lab, "db2")
        assert st.sql_delay == 30
        assert (st.io_state, st.sql_running) == ("Yes", True)
        write_on(lab, "db2", "app.delayed")
        swapped(lab, "db2", "db1", "--catchup-timeout", "3")
        st = status(lab, "db3")
        assert st.source_port == port_of(lab, "db1") and st.sql_delay == 30
    finally:
        on_stopped_replica(lab, "db3", delay(lab, "db3", 0))
        lab.query("db1", "DROP TABLE IF EXISTS app.delayed")


# -- 3. stopped siblings ---------------------------------------------------------------------
def test_stopped_sibling_stays_stopped_also_after_recover(lab: RunningLab) -> None:
    lab.stop_replica("db3")
    try:
        out = swapped(lab, "db1", "db2")
        st = status(lab, "db3")
        assert st.source_port == port_of(lab, "db2")
        assert (st.io_state, st.sql_running) == ("No", False)
        warn = checks(out, "warn")["sibling db3"]["message"]
        assert "stay stopped" in warn and "verify will not wait" in warn
        assert any("db3" in n and "left stopped" in n for n in out["notes"]), out["notes"]
        # killed before repoint; recover re-runs Repoint and Verify from the journal
        code, _ = swap(lab, "db2", "db1", env={"ROLESWAP_KILL_AT": "repoint:before"})
        assert code == -9
        rec = roleswap(lab, "recover", "--yes", "--json")
        assert rec.returncode == 0, rec.stdout + rec.stderr
        st = status(lab, "db3")
        assert st.source_port == port_of(lab, "db1")
        assert (st.io_state, st.sql_running) == ("No", False)
    finally:
        lab.start_replica("db3")


def test_sibling_with_only_io_running_keeps_only_io(lab: RunningLab) -> None:
    lab.stop_replica("db3", "SQL_THREAD")
    try:
        out = swapped(lab, "db1", "db2")
        assert "only its IO thread" in checks(out, "warn")["sibling db3"]["message"]
        st = wait_io(lab, "db3", "Yes")
        assert st.source_port == port_of(lab, "db2")
        assert (st.io_state, st.sql_running) == ("Yes", False)
        swapped(lab, "db2", "db1")
        st = wait_io(lab, "db3", "Yes")
        assert st.source_port == port_of(lab, "db1")
        assert not st.sql_running
    finally:
        lab.start_replica("db3")


@pytest.fixture(scope="module")
def filepos_lab(tmp_path_factory: pytest.TempPathFactory,
                server_flavor: str) -> Iterator[RunningLab]:
    started = start_lab(tmp_path_factory.mktemp("gates-fp") / "lab", server_flavor, gtid=False)
    yield RunningLab(started)
    lab_down(started.dir)


def test_filepos_refuses_stopped_or_delayed_sibling(filepos_lab: RunningLab) -> None:
    """File/position siblings are repointed at coordinates: they must apply the final
    position during the catch-up, which a stopped or delayed one cannot."""
    lab = filepos_lab
    wait_healthy(lab, "db1")
    lab.stop_replica("db3")
    try:
        fail = checks(refused(lab, "--from", "db1", "--to", "db2"), "fail")["sibling db3"]
        assert "file/position" in fail["message"]
        assert lab.dialect("db3").start_replica_sql in fail["remedy"]
    finally:
        lab.start_replica("db3")
    on_stopped_replica(lab, "db3", delay(lab, "db3", 30))
    try:
        fail = checks(refused(lab, "--from", "db1", "--to", "db2"), "fail")["sibling db3 delay"]
        assert "SQL_Delay=30s" in fail["message"] and delay_off_text(lab, "db3") in fail["remedy"]
    finally:
        on_stopped_replica(lab, "db3", delay(lab, "db3", 0))
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
    """MySQL's default (performance_schema) names the holder; MariaDB's default (no lock
    instrumentation) names the table, and the thread once metadata_lock_info is loaded."""
    lab.query("db1", "CREATE TABLE IF NOT EXISTS app.gate_locked (id INT PRIMARY KEY)")
    holder = lab.app("db1")
    instrumented = [r[0] for r in lab.query(
        "db1", "SELECT ENABLED FROM performance_schema.setup_instruments "
               "WHERE NAME = 'wait/lock/metadata/sql/mdl'")] == ["YES"]
    plugin = not instrumented and bool(lab.query("db1", "SHOW PLUGINS SONAME 'metadata_lock_info.so'"))
    installed = False
    user = lab.config.lab.app_user if lab.config.lab else "app"
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES app.gate_locked WRITE")
            cur.execute("SELECT CONNECTION_ID()")
            holder_id = int(cur.fetchone()[0])  # type: ignore[index]
        code, data = check_json(lab)
        warn = checks(data)["locks"]
        assert code == 0 and warn["status"] == "warn", warn
        if instrumented:
            assert (f"thread {holder_id} (user {user}): LOCK TABLES ... WRITE on app.gate_locked"
                    in warn["message"]), warn
            return
        # no lock instrumentation: the table is named, not the thread
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
        lab.write_through_fence(n, "SET SESSION sql_log_bin=0", *stmts)


def config_as(lab: RunningLab, tmp_path: Path, user: str, password: str) -> str:
    """A copy of the lab's config that logs in as ``user``."""
    text = lab.config_path.read_text()
    head, rest = text.split("[mysql]", 1)
    _body, tail = rest.split("\n\n", 1)
    cfg = tmp_path / f"{user}.toml"
    cfg.write_text(head + f'[mysql]\nuser = "{user}"\npassword = "{password}"\n\n' + tail)
    return str(cfg)


def needs(lab: RunningLab) -> tuple[Need, ...]:
    """What the control account needs on db1's flavor and version (the documented list)."""
    d = lab.dialect("db1")
    return control_needs(d.flavor, d.version)


def privileges(chosen: list[Need]) -> str:
    """The privilege to grant for each of ``chosen`` (as GRANT spells it, as the remedy
    lists it)."""
    return ", ".join(dict.fromkeys(n.any_of[0] for n in chosen))


def minimal(lab: RunningLab) -> str:
    return privileges(list(needs(lab)))


# Which needs each case grants (ON *.*), besides ALL ON roleswap.*
CASES: dict[str, Any] = {
    # ALL on roleswap.* and nothing global: the topology cannot even be read
    "all-on-db-only": lambda n, d: False,
    # the review's case: ALL on roleswap.* passed a substring check, then the fence failed (1227)
    "all-on-db-plus-monitors": lambda n, d: n.what.startswith("read "),
    # everything but the privilege that fences
    "no-fence-privilege": lambda n, d: n.what != f"set {d.fence_var}",
    "no-process": lambda n, d: "PROCESS" not in n.any_of,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_control_account_refused(lab: RunningLab, tmp_path: Path, case: str) -> None:
    d = lab.dialect("db1")
    granted = [n for n in needs(lab) if CASES[case](n, d)]
    missing = privileges([n for n in needs(lab) if n not in granted])
    grants = ["GRANT ALL ON roleswap.* TO 'g'@'%'"]
    extra = [] if case == "all-on-db-only" else ["SELECT"]
    fence = next(n for n in needs(lab) if n.what == f"set {d.fence_var}")
    if case == "no-fence-privilege" and "SUPER" not in fence.any_of:
        extra.append("SUPER")  # MariaDB 10.11+: SUPER no longer lets read_only be set
    on_all = [*extra, *(n.any_of[0] for n in granted)]
    if on_all:
        grants.append(f"GRANT {', '.join(on_all)} ON *.* TO 'g'@'%'")
    accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "CREATE USER 'g'@'%' IDENTIFIED BY 'gpw'", *grants)
    try:
        data = refused(lab, "--from", "db1", "--to", "db2", config=config_as(lab, tmp_path, "g", "gpw"))
        fail = checks(data, "fail")["privileges db1"]
        for priv in missing.split(", "):
            assert priv in fail["message"], (priv, fail)
        assert fail["remedy"] == f"on db1 run: GRANT {missing} ON *.* TO `g`@`%`"
        assert "ON `roleswap`.* do not count" in fail["message"]
    finally:
        accounts(lab, "DROP USER IF EXISTS 'g'@'%'")


def test_minimal_control_account_swaps(lab: RunningLab, tmp_path: Path) -> None:
    """Exactly the documented list is enough for a whole swap and back."""
    accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "CREATE USER 'g'@'%' IDENTIFIED BY 'gpw'",
             f"GRANT {minimal(lab)} ON *.* TO 'g'@'%'")
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
    """MariaDB: a role's privileges count once it is the default role.  MySQL's SHOW GRANTS
    never expands roles: refused, saying so (grant them directly)."""
    reads = privileges([n for n in needs(lab) if n.what.startswith("read ")])
    accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "DROP ROLE IF EXISTS gate_role",
             "CREATE USER 'g'@'%' IDENTIFIED BY 'gpw'", "CREATE ROLE gate_role",
             f"GRANT {reads} ON *.* TO 'g'@'%'",
             f"GRANT {minimal(lab)} ON *.* TO gate_role", "GRANT gate_role TO 'g'@'%'")
    cfg = config_as(lab, tmp_path, "g", "gpw")
    try:
        data = refused(lab, "--from", "db1", "--to", "db2", config=cfg)
        fail = checks(data, "fail")["privileges db1"]
        if not lab.dialect("db1").show_grants_expands_roles:
            assert re.search(r"privileges through roles \(gate_role(@%)?\) are not checked",
                             fail["message"]), fail
            return
        assert "gate_role are granted but not active" in fail["message"]
        accounts(lab, "SET DEFAULT ROLE gate_role FOR 'g'@'%'")
        code, data = check_json(cfg)
        assert code == 0 and checks(data)["privileges db1"]["status"] == "ok", data
    finally:
        accounts(lab, "DROP USER IF EXISTS 'g'@'%'", "DROP ROLE IF EXISTS gate_role")
