"""roleswap.testing without servers: argument checks, the rendered config, secrets kept out
of reprs, lazy imports, the auto backend's probe of a dead engine, and the pytest plugin's
option/ini plumbing (real pytest runs in a directory outside the repository)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from roleswap.config import load_config
from roleswap.testing import (
    BACKENDS,
    SERVERS,
    AppAccount,
    ClusterError,
    RunningCluster,
    choose_backend,
    start_cluster,
)
from roleswap.testing.containers import _tail
from roleswap.testing.engine import docker_client, images_for, probe
from roleswap.testing.render import ConfigSpec, ServerEntry, render_config, write_private

NASTY = 'pa"ss\\wo\'rd #1 ü'  # quotes, backslash, comment sign, non-ASCII


# -- arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "names"), [
    ({"server": "mariadb-99"}, SERVERS),
    ({"backend": "podman"}, BACKENDS),
    ({"replicas": 0}, ("1", "8")),
    ({"replicas": 9}, ("1", "8")),
    ({"replicas": True}, ("1", "8")),
    ({"replicas": "2"}, ("1", "8")),
])
def test_bad_arguments_refused_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object],
        names: tuple[str, ...]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a backend would make its dir
    with pytest.raises(ValueError) as info, start_cluster(**kwargs):  # type: ignore[arg-type]
        pytest.fail("started")
    for name in names:
        assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_servers_and_backends() -> None:
    assert SERVERS == ("mariadb-10.11", "mariadb-11.8", "mysql-9.7")
    assert BACKENDS == ("auto", "docker", "process")
    assert images_for("mysql-9.7")[0].endswith("roleswap/server:mysql-9.7")
    assert images_for("mysql-9.7")[1].endswith("roleswap/redis:latest")


# -- the rendered config -------------------------------------------------------------------
def spec(tmp_path: Path) -> ConfigSpec:
    return ConfigSpec(
        cluster="test", control_user="roleswap", control_password=NASTY + "c",
        repl_user="repl", repl_password=NASTY + "r", redis_url="redis://127.0.0.1:6390/0",
        app_user="app", app_password=NASTY + "a", database="app",
        journal_dir=tmp_path / "journal",
        servers=[ServerEntry("db1", "127.0.0.1", 49001, "db1", 3306),
                 ServerEntry("db2", "127.0.0.1", 49002, "db2", 3306),
                 ServerEntry("db3", "127.0.0.1", 49003)],
        comment="servers: mysql-9.7 in containers",
    )


def test_rendered_config_round_trips_through_load_config(tmp_path: Path) -> None:
    path = write_private(tmp_path / "roleswap.toml", render_config(spec(tmp_path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config(path)
    assert cfg.cluster == "test" and cfg.scope == "test" and cfg.switch_method == "endpoint"
    assert cfg.mysql.user == "roleswap" and cfg.mysql.password.reveal() == NASTY + "c"
    assert cfg.replication.password.reveal() == NASTY + "r"
    assert cfg.redis_url is not None and cfg.redis_url.reveal() == "redis://127.0.0.1:6390/0"
    assert cfg.journal_dir == str(tmp_path / "journal")
    assert cfg.lab is not None and cfg.lab.app_password.reveal() == NASTY + "a"
    assert (cfg.lab.app_user, cfg.lab.database, cfg.lab.dir) == ("app", "app", None)
    assert [(s.name, s.host, s.port) for s in cfg.servers.values()] == [
        ("db1", "127.0.0.1", 49001), ("db2", "127.0.0.1", 49002), ("db3", "127.0.0.1", 49003)]
    assert cfg.servers["db2"].extra == {"replication_host": "db2", "replication_port": 3306}
    assert cfg.servers["db3"].extra == {}  # unset: roleswap uses host/port


def test_write_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new"


# -- secrets stay out of reprs and messages ------------------------------------------------
def test_passwords_never_in_reprs(tmp_path: Path) -> None:
    s = spec(tmp_path)
    account = AppAccount("app", "hunter2-secret", "app")
    cluster = RunningCluster(id="x", server="mariadb-10.11", backend="process", backend_reason="asked",
                             replicas=1, gtid=True, config_path=tmp_path / "x.toml",
                             servers={"db1": ("127.0.0.1", 1)}, redis_url="redis://127.0.0.1:2/0",
                             app_account=account, _admin=lambda name: pytest.fail(name))
    for text in (repr(s), str(s), repr(account), str(account), repr(cluster)):
        assert NASTY not in text and "hunter2-secret" not in text
    user, password, database = account
    assert (user, password, database) == ("app", "hunter2-secret", "app")
    with pytest.raises(ValueError, match="db1"):
        cluster.admin("db9")


def test_cluster_error_shows_its_remedy() -> None:
    e = ClusterError("no engine", remedy="start Docker")
    assert str(e) == "no engine (fix: start Docker)" and e.remedy == "start Docker"


def test_container_log_tail_is_short_and_scrubbed() -> None:
    logs = b"starting\nuser roleswap password pw-1 set\nwaiting\nwaiting\n\nwaiting\nstill waiting\n"
    assert _tail(logs, ("pw-1",), lines=3) == "user roleswap password *** set | waiting | still waiting"
    assert _tail(b"", ()) == "(no output)"


# -- imports and the docker probe ----------------------------------------------------------
def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, check=False)


def test_import_needs_neither_testcontainers_nor_docker() -> None:
    res = run_python("import sys, roleswap.testing, roleswap.testing.plugin, roleswap.testing.containers\n"
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "('testcontainers', 'docker')))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_docker_backend_without_testcontainers_says_how_to_install() -> None:
    # testcontainers made unimportable in a child interpreter (as if not installed)
    res = run_python("import sys; sys.modules['testcontainers'] = None\n"
                     "from roleswap.testing import start_cluster\n"
                     "try:\n"
                     "    with start_cluster(backend='docker'): pass\n"
                     "except Exception as e: print(type(e).__name__, e)\n")
    assert res.returncode == 0, res.stderr
    assert "ClusterError" in res.stdout and "pip install 'roleswap[testing]'" in res.stdout


def test_no_engine_auto_falls_back_and_docker_says_why(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    t0 = time.monotonic()
    found = probe("mariadb-10.11")
    assert time.monotonic() - t0 < 3
    assert not found.usable and "no-engine.sock" in found.reason
    with pytest.raises(ClusterError, match="no Docker engine answers") as info:
        docker_client()
    assert "DOCKER_HOST" in info.value.remedy
    assert choose_backend("mariadb-10.11", "docker") == ("docker", "backend=docker was asked for")
    # a child process: choose_backend caches auto's decision per flavor for the session
    res = run_python("from roleswap.testing import choose_backend\n"
                     "import json; print(json.dumps(choose_backend('mysql-9.7', 'auto')))",
                     DOCKER_HOST=f"unix://{tmp_path}/x.sock")
    assert res.returncode == 0, res.stderr
    backend, why = json.loads(res.stdout)
    assert backend == "process"
    assert why == f"auto: no docker (no Docker engine answers (DOCKER_HOST=unix://{tmp_path}/x.sock): " \
                  "no socket there); local processes"


# -- the pytest plugin's settings ----------------------------------------------------------
SETTINGS_TEST = '''
import json, sys
def test_settings(roleswap_cluster_settings, request):
    s = roleswap_cluster_settings
    out = {"server": s.server, "backend": s.backend, "replicas": s.replicas,
           "docker_imported": any(m.split(".")[0] in ("testcontainers", "docker") for m in sys.modules)}
    open(request.config.rootpath / "settings.json", "w").write(json.dumps(out))
'''


def run_pytest(directory: Path, *args: str, ini: str = "") -> tuple[subprocess.CompletedProcess[str], dict]:
    (directory / "test_settings.py").write_text(SETTINGS_TEST)
    (directory / "pytest.ini").write_text("[pytest]\n" + ini)
    (directory / "settings.json").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                         cwd=directory, capture_output=True, text=True, timeout=120, env=env, check=False)
    out = directory / "settings.json"
    return res, json.loads(out.read_text()) if out.exists() else {}


def test_plugin_defaults_ini_and_options(tmp_path: Path) -> None:
    res, got = run_pytest(tmp_path)  # the plugin comes from the pytest11 entry point
    assert res.returncode == 0, res.stdout + res.stderr
    assert got == {"server": "mariadb-10.11", "backend": "auto", "replicas": 2, "docker_imported": False}
    ini = "roleswap_server = mysql-9.7\nroleswap_backend = process\nroleswap_replicas = 3\n"
    res, got = run_pytest(tmp_path, ini=ini)
    assert got == {"server": "mysql-9.7", "backend": "process", "replicas": 3, "docker_imported": False}
    res, got = run_pytest(tmp_path, "--roleswap-server", "mariadb-11.8", "--roleswap-backend", "docker",
                          "--roleswap-replicas", "1", ini=ini)  # the command line wins
    assert got == {"server": "mariadb-11.8", "backend": "docker", "replicas": 1, "docker_imported": False}


@pytest.mark.parametrize(("args", "ini", "expect"), [
    (("--roleswap-server", "mysql-5.0"), "", "invalid choice: 'mysql-5.0'"),
    (("--roleswap-backend", "k8s"), "", "invalid choice: 'k8s'"),
    (("--roleswap-replicas", "12"), "", "replicas must be an integer from 1 to 8"),
    ((), "roleswap_server = oracle-23\n", "unknown server flavor 'oracle-23'; use one of: mariadb-10.11"),
    ((), "roleswap_replicas = many\n", "replicas must be an integer from 1 to 8, got 'many'"),
])
def test_plugin_refuses_bad_settings(tmp_path: Path, args: tuple[str, ...], ini: str, expect: str) -> None:
    res, got = run_pytest(tmp_path, *args, ini=ini)
    assert res.returncode == 4 and got == {}  # a usage error: no test ran
    assert expect in res.stderr


SIGTERM_CHILD = '''
import os, signal, sys, time
from roleswap.testing.interrupt import teardown_on_sigterm
if sys.argv[1] == "own-handler":
    signal.signal(signal.SIGTERM, lambda *_: print("own handler ran", flush=True))
print("installed" if teardown_on_sigterm() else "left alone", flush=True)
print("again" if teardown_on_sigterm() == (sys.argv[1] == "default") else "not idempotent",
      flush=True)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(2)
    print("no interrupt", flush=True)
except KeyboardInterrupt as e:
    print(f"teardown ran: {e}", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # a second one ends the process at once
    time.sleep(5)
    print("still alive after the second SIGTERM", flush=True)
'''


def test_sigterm_raises_keyboard_interrupt_once_then_ends_the_process() -> None:
    res = subprocess.run([sys.executable, "-c", SIGTERM_CHILD, "default"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.stdout.splitlines() == [
        "installed", "again", "teardown ran: SIGTERM: tearing down the servers this run started"]
    assert res.returncode == -15, res.stderr


def test_sigterm_handler_someone_installed_is_left_alone() -> None:
    res = subprocess.run([sys.executable, "-c", SIGTERM_CHILD, "own-handler"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.stdout.splitlines()[:3] == ["left alone", "again", "own handler ran"]
    assert res.returncode == 0, res.stderr
