"""docker/ without Docker: the server image's grants cannot drift from the process lab's,
its config files start every server read-only, its entrypoint library checks the
environment and quotes passwords correctly, and the build/engine scripts say what the
contract says (tags, bases, the private engine's network settings)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from roleswap.config import load_config
from roleswap.lab.flavors import FLAVORS
from roleswap.lab.mariadb import CONTROL_GRANTS as MARIADB_CONTROL
from roleswap.lab.mariadb import MariaDBEngine
from roleswap.lab.mysql import CONTROL_GRANTS as MYSQL_CONTROL
from roleswap.lab.mysql import MySQLEngine
from roleswap.lab.node import APP_GRANTS

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SERVER = DOCKER / "server"
LIB = SERVER / "lib.sh"
SHELL_SCRIPTS = [DOCKER / "build", SERVER / "entrypoint.sh", SERVER / "lib.sh", SERVER / "install.sh",
                 SERVER / "healthcheck.sh", REPO / "scripts" / "_docker.sh"]


@pytest.mark.parametrize(("name", "constant"), [
    ("mariadb-control", MARIADB_CONTROL),
    ("mariadb-repl", MariaDBEngine.repl_grants),
    ("mysql-control", MYSQL_CONTROL),
    ("mysql-repl", MySQLEngine.repl_grants),
    ("app", APP_GRANTS),
])
def test_grant_files_equal_the_lab_constants(name: str, constant: str) -> None:
    assert (SERVER / "grants" / f"{name}.grants").read_text().strip() == constant


def test_entrypoint_uses_every_grant_file() -> None:
    text = (SERVER / "entrypoint.sh").read_text()
    for part in ("$ENGINE-control.grants", "$ENGINE-repl.grants", "grants/app.grants"):
        assert part in text
    assert {p.name for p in (SERVER / "grants").iterdir()} == {
        "mariadb-control.grants", "mariadb-repl.grants", "mysql-control.grants", "mysql-repl.grants",
        "app.grants"}


def _server_section(path: Path) -> set[str]:
    text = path.read_text().split("[client]")[0]
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def test_config_files_start_every_server_read_only() -> None:
    mariadb = _server_section(SERVER / "conf" / "mariadb.cnf")
    mysql = _server_section(SERVER / "conf" / "mysql.cnf")
    assert {"read_only=1", "log_bin=mysql-bin", "binlog_format=ROW", "log_slave_updates=1",
            "gtid_strict_mode=1", "skip_name_resolve=1"} <= mariadb
    assert {"read_only=1", "super_read_only=1", "log_bin=mysql-bin", "binlog_format=ROW",
            "log_replica_updates=ON", "gtid_mode=ON", "enforce_gtid_consistency=ON", "mysqlx=OFF",
            "skip_name_resolve=ON"} <= mysql
    for lines in (mariadb, mysql):
        # nothing per-container in the file (the entrypoint passes those), no log file
        per_container = r"(server[_-]id|report[_-]host|port|log[_-]error)\s*="
        assert not any(re.match(per_container, x) for x in lines)
    # and the entrypoint never switches read_only off on the command line
    entry = (SERVER / "entrypoint.sh").read_text()
    assert "--read-only" not in entry and "--read_only" not in entry and "--super-read-only" not in entry


def _bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` after sourcing docker/server/lib.sh, with only ``env`` (+ PATH)."""
    base = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "{LIB}"; {script}'],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**base, **(env or {})})


def _mysql_unquote(literal: str) -> str:
    """What MySQL/MariaDB make of a single-quoted literal (no NO_BACKSLASH_ESCAPES)."""
    assert literal[0] == literal[-1] == "'"
    out, i, body = [], 0, literal[1:-1]
    escapes = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
    while i < len(body):
        c = body[i]
        if c == "\\":
            i += 1
            out.append(escapes.get(body[i], body[i]))
        elif c == "'":
            assert body[i + 1] == "'", f"unescaped quote in {literal!r}"
            out.append("'")
            i += 1
        else:
            out.append(c)
        i += 1
    return "".join(out)


@pytest.mark.parametrize("value", [
    "plain", "it's", "back\\slash", "\\'", "'; DROP USER root; --", "\\", "''", "x\\n", "tab\there",
    "new\nline", "é ü 密码", "$(id) `id` ${HOME}", "%s %d", "end\\",
])
def test_sql_quote_round_trips(value: str) -> None:
    res = _bash('rs_sql_quote "$V"', {"V": value})
    assert res.returncode == 0, res.stderr
    assert _mysql_unquote(res.stdout) == value


def _read_env(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _bash('rs_read_env; echo "OK $RS_SERVER_ID $RS_ROLE $RS_SOURCE_HOST:$RS_SOURCE_PORT $RS_PORT '
                 '$RS_GTID '
                 '$RS_CONTROL_USER $RS_APP_DATABASE"', env)


GOOD = {"ROLESWAP_SERVER_ID": "7", "ROLESWAP_ROLE": "replica", "ROLESWAP_SOURCE": "db1",
        "ROLESWAP_CONTROL_PASSWORD": "c", "ROLESWAP_REPL_PASSWORD": "r", "ROLESWAP_APP_PASSWORD": "a"}


def test_read_env_defaults() -> None:
    res = _read_env(GOOD)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "OK 7 replica db1:3306 3306 1 roleswap app"
    res = _read_env({**GOOD, "ROLESWAP_SOURCE": "db-9.example:3307", "ROLESWAP_PORT": "3310",
                     "ROLESWAP_GTID": "0"})
    assert res.stdout.strip() == "OK 7 replica db-9.example:3307 3310 0 roleswap app", res.stderr


@pytest.mark.parametrize(("change", "named"), [
    ({"ROLESWAP_SERVER_ID": None}, "ROLESWAP_SERVER_ID is required"),
    ({"ROLESWAP_SERVER_ID": "0"}, "ROLESWAP_SERVER_ID='0'"),
    ({"ROLESWAP_SERVER_ID": "4294967296"}, "ROLESWAP_SERVER_ID='4294967296'"),
    ({"ROLESWAP_ROLE": None}, "ROLESWAP_ROLE is required"),
    ({"ROLESWAP_ROLE": "source"}, "ROLESWAP_ROLE='source'"),
    ({"ROLESWAP_SOURCE": None}, "ROLESWAP_SOURCE is required for a replica"),
    ({"ROLESWAP_SOURCE": "db1:99999"}, "ROLESWAP_SOURCE='db1:99999'"),
    ({"ROLESWAP_SOURCE": "db1'; DROP"}, "ROLESWAP_SOURCE="),
    ({"ROLESWAP_GTID": "yes"}, "ROLESWAP_GTID='yes'"),
    ({"ROLESWAP_PORT": "0"}, "ROLESWAP_PORT='0'"),
    ({"ROLESWAP_APP_USER": "a'b"}, "ROLESWAP_APP_USER='a'b'"),
    ({"ROLESWAP_REPL_USER": "roleswap"}, "three different accounts"),
    ({"ROLESWAP_CONTROL_USER": "root"}, "ROLESWAP_CONTROL_USER must not be root"),
    ({"ROLESWAP_APP_DATABASE": "mysql"}, "ROLESWAP_APP_DATABASE must not be 'mysql'"),
    ({"ROLESWAP_APP_DATABASE": "a`b"}, "ROLESWAP_APP_DATABASE='a`b'"),
    ({"ROLESWAP_CONTROL_PASSWORD": None},
     "ROLESWAP_CONTROL_PASSWORD (or ROLESWAP_CONTROL_PASSWORD_FILE) is required"),
    ({"ROLESWAP_REPL_PASSWORD": ""}, "ROLESWAP_REPL_PASSWORD (or ROLESWAP_REPL_PASSWORD_FILE) is required"),
    ({"ROLESWAP_APP_PASSWORD_FILE": "/nonexistent/pw"},
     "both ROLESWAP_APP_PASSWORD and ROLESWAP_APP_PASSWORD_FILE"),
    ({"ROLESWAP_APP_PASSWORD": None, "ROLESWAP_APP_PASSWORD_FILE": "/nonexistent/pw"},
     "ROLESWAP_APP_PASSWORD_FILE names '/nonexistent/pw', which is not a readable file"),
])
def test_read_env_refuses_naming_the_variable(change: dict[str, str | None], named: str) -> None:
    env = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    res = _read_env(env)
    assert res.returncode != 0 and "OK" not in res.stdout
    assert named in res.stderr, res.stderr
    assert res.stderr.startswith("roleswap-server: error: ")


def test_password_file_and_no_leak(tmp_path: Path) -> None:
    secret = "s3cr'et\\pw"
    (tmp_path / "pw").write_text(secret + "\n\n")
    env = {**GOOD, "ROLESWAP_REPL_PASSWORD_FILE": str(tmp_path / "pw")}
    del env["ROLESWAP_REPL_PASSWORD"]
    # the file's trailing newlines are dropped; the variables are gone afterwards
    res = _bash('rs_read_env; printf "%s|" "$RS_REPL_PASSWORD" "${ROLESWAP_REPL_PASSWORD_FILE-unset}" '
                '"${ROLESWAP_CONTROL_PASSWORD-unset}"; env | grep -c PASSWORD || true', env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"{secret}|unset|unset|0"
    assert secret not in res.stderr


def test_redact_hides_raw_and_quoted_secrets() -> None:
    res = _bash("rs_redact \"ERROR 1064 (42000) at line 3: syntax near 'it\\\\'s' and it's\" \"it's\"")
    assert res.returncode == 0, res.stderr
    assert "it's" not in res.stdout and "near" not in res.stdout
    assert res.stdout.startswith("ERROR 1064 (42000) at line 3: syntax")


@pytest.mark.parametrize("text", ["SELECT; DROP DATABASE app", "ALL ON *.* TO x", "select", "SELECT,RELOAD",
                                  ""])
def test_grant_check_refuses_anything_but_a_privilege_list(tmp_path: Path, text: str) -> None:
    (tmp_path / "g").write_text(text)
    res = _bash(f'rs_check_grants "{tmp_path / "g"}"')
    assert res.returncode != 0 and "is not a privilege list" in res.stderr


def test_grant_check_accepts_the_grant_files() -> None:
    for f in (SERVER / "grants").iterdir():
        res = _bash(f'rs_check_grants "{f}"')
        assert res.returncode == 0 and res.stdout == f.read_text().strip(), (f, res.stderr)


def _build_table() -> dict[str, tuple[str, str, str]]:
    """docker/build's IMAGES table: name -> (tag, suite, extra args)."""
    text = (DOCKER / "build").read_text()
    block = text.split("IMAGES=(", 1)[1].split("\n)", 1)[0]
    rows = [line.strip().strip('"').split("|") for line in block.splitlines() if line.strip().startswith('"')]
    return {r[0]: (r[1], r[2], r[5]) for r in rows}


def test_build_tags_and_bases_follow_the_flavors() -> None:
    table = _build_table()
    assert {t for t, _s, _a in table.values()} == {
        "roleswap/server:mariadb-10.11", "roleswap/server:mariadb-11.8", "roleswap/server:mysql-9.7",
        "roleswap/redis:latest", "roleswap/roleswap:latest", "roleswap/demo-app:latest"}
    for name, fl in FLAVORS.items():
        _tag, suite, args = table[f"server:{name}"]
        # the process lab's flavors: the host's own Debian 12 package, or the suite it is fetched from
        assert suite == (fl.suite or "bookworm")
        assert f"--build-arg SUITE={suite}" in args and f"--build-arg FLAVOR={name}" in args
    install = (SERVER / "install.sh").read_text()
    for name in FLAVORS:
        assert f"{name})" in install


def test_dockerfiles_build_from_official_base_names() -> None:
    for f in (SERVER / "Dockerfile", DOCKER / "redis" / "Dockerfile", DOCKER / "roleswap" / "Dockerfile"):
        froms = re.findall(r"^FROM (\S+)", f.read_text(), re.M)
        bases = [b for b in froms if ":" in b]
        official = r"debian:(\$\{SUITE\}|bookworm|trixie|sid)-slim"
        assert bases and all(re.fullmatch(official, b) for b in bases), froms


def test_private_engine_settings() -> None:
    text = (REPO / "scripts" / "_docker.sh").read_text()
    cfg = text.split("<<EOF\n", 1)[1].split("\nEOF", 1)[0]
    data = json.loads(re.sub(r"\$\w+", "X", cfg))
    # iptables on breaks every other bridge on the machine (docker-facts.md)
    assert data["iptables"] is False and data["ip6tables"] is False and data["ip-forward"] is False
    assert data["ip-masq"] is False
    assert data["bip"] == "198.19.240.1/24"
    assert data["default-address-pools"] == [{"base": "198.19.248.0/21", "size": 24}]
    for key in ("TESTCONTAINERS_RYUK_DISABLED", "TESTCONTAINERS_CONNECTION_MODE",
                "TESTCONTAINERS_HOST_OVERRIDE", "ROLESWAP_DOCKER_SKIP", "ROLESWAP_DOCKER_REQUIRED",
                "DOCKER_HOST"):
        assert f"export {key}=" in text


def test_compose_lab_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = (DOCKER / "compose.yaml").read_text()
    for var in ("ROLESWAP_CONTROL_PASSWORD", "ROLESWAP_REPL_PASSWORD", "ROLESWAP_APP_PASSWORD"):
        assert f"{var}:" in compose  # compose.yaml sets what roleswap.toml reads
        monkeypatch.setenv(var, f"x-{var}")
    cfg = load_config(DOCKER / "roleswap.toml")
    assert {n: (s.host, s.port) for n, s in cfg.servers.items()} == {
        "db1": ("db1", 3306), "db2": ("db2", 3306), "db3": ("db3", 3306)}
    assert cfg.redis_url is not None and cfg.redis_url.reveal() == "redis://redis:6379/0"
    assert cfg.lab is not None and cfg.lab.app_user == "app"
    assert cfg.lab.app_password.reveal() == "x-ROLESWAP_APP_PASSWORD"
    assert cfg.switch_method == "endpoint"


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_parse(script: Path) -> None:
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    text = script.read_text()
    assert not re.search(r"^\s*set -[a-z]*x", text, re.M), "set -x would print passwords"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    res = subprocess.run(["shellcheck", "-x", "-S", "warning", *map(str, SHELL_SCRIPTS)],
                         capture_output=True, text=True, check=False, cwd=REPO)
    assert res.returncode == 0, res.stdout
