"""haproxy method: config validation, runtime-API commands and parsing, the transports
(a unix socket served by a thread, a recording stand-in for the SSH shell)."""

from __future__ import annotations

import shlex
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roleswap.config import parse_config
from roleswap.config_keys import check_keys
from roleswap.errors import ConfigError
from roleswap.remote import Result
from roleswap.switch import haproxy_api as api
from roleswap.switch.haproxy_config import Instance, haproxy_settings

# `show servers state mysql_primary` from Debian's haproxy 2.6: db1 ready, db2 `disabled`
# in the config (admin 5), db3 set ready at run time after `disabled` (admin 4), db4 drain,
# db5 ready but its health check failed (op 0)
SHOW = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight (...)
3 mysql_primary 1 db1 127.0.0.1 2 0 1 1 39 1 0 2 0 0 0 0 - 13306 - 0 0 - - 0
3 mysql_primary 2 db2 127.0.0.1 0 5 1 1 0 1 0 0 8 0 0 0 - 13307 - 0 0 - - 0
3 mysql_primary 3 db3 127.0.0.1 2 4 1 1 0 1 0 0 8 0 0 0 - 13308 - 0 0 - - 0
3 mysql_primary 4 db4 127.0.0.1 2 8 1 1 0 1 0 0 8 0 0 0 - 13309 - 0 0 - - 0
3 mysql_primary 5 db5 127.0.0.1 0 0 1 1 0 1 0 0 8 0 0 0 - 13310 - 0 0 - - 0

"""


def conf(inst: dict[str, Any] | None = None, switch: dict[str, Any] | None = None,
         db2: dict[str, Any] | None = None) -> dict[str, Any]:
    one = {"name": "lb1", "socket": "/run/haproxy/admin.sock", "frontend": "127.0.0.1:3306",
           "backend": "mysql_primary"}
    one.update(inst or {})
    sw: dict[str, Any] = {"method": "haproxy", "haproxy": [one]}
    sw.update(switch or {})
    return {
        "cluster": "c",
        "mysql": {"user": "ctl", "password": "pw"},
        "replication": {"user": "repl", "password": "pw"},
        "switch": sw,
        "servers": {"db1": {"host": "10.0.0.11"}, "db2": {"host": "10.0.0.12", **(db2 or {})}},
    }


def test_states_are_parsed_as_the_runtime_api_words_them() -> None:
    found = api.parse_servers_state(SHOW, "mysql_primary")
    assert {n: s.state for n, s in found.items()} == {
        "db1": "ready", "db2": "maint", "db3": "ready", "db4": "drain", "db5": "down"}
    assert found["db2"].address == "127.0.0.1" and found["db2"].admin == 5


@pytest.mark.parametrize(("answer", "says"), [
    ("Can't find backend.\n\n", "there is no backend 'mysql_primary'"),
    ("Permission denied\n\n", "level admin"),
    ("", "see HAProxy's answer"),
])
def test_haproxy_refusals_become_errors_with_a_fix(answer: str, says: str) -> None:
    with pytest.raises(api.ApiError) as e:
        api.parse_servers_state(answer, "mysql_primary")
    assert says in e.value.remedy


def test_commands_and_unsafe_names() -> None:
    assert api.cmd_set("be", "db1", "maint") == "set server be/db1 state maint"
    assert api.cmd_shutdown("be", "db1") == "shutdown sessions server be/db1"
    assert api.cmd_show("be") == "show servers state be"
    for bad in ("db1; shutdown sessions", "a b", "x\nshow info", ""):
        with pytest.raises(ValueError):
            api.cmd_set("be", bad, "ready")


def test_valid_config_with_defaults_and_a_server_entry_override() -> None:
    cfg = parse_config(conf(db2={"haproxy_server": "mysql-b"}, switch={"verify_timeout": 3}))
    s = haproxy_settings(cfg)
    (i,) = s.instances
    assert (i.name, i.socket, i.address, i.frontend, i.backend, i.timeout) == (
        "lb1", "/run/haproxy/admin.sock", None, ("127.0.0.1", 3306), "mysql_primary", 2.0)
    assert s.servers == {"db1": "db1", "db2": "mysql-b"} and s.verify_timeout == 3.0
    assert i.api == "unix socket /run/haproxy/admin.sock"
    data = conf({"address": "127.0.0.1:9999"})
    del data["switch"]["haproxy"][0]["socket"]
    (t,) = haproxy_settings(parse_config(data)).instances
    assert (t.socket, t.address, t.api) == (None, ("127.0.0.1", 9999), "TCP 127.0.0.1:9999")


@pytest.mark.parametrize(("inst", "db2", "says"), [
    ({"frontend": None}, None, "frontend"),
    ({"backend": "mysql primary"}, None, "backend"),
    ({"backend": "be;set"}, None, "backend"),
    ({"address": "127.0.0.1:9999"}, None, "exactly one of socket / address"),
    ({"socket": "/run/a,b.sock"}, None, "socket"),
    ({"socket": "relative.sock"}, None, "socket"),
    ({"frontend": "127.0.0.1"}, None, "host:port"),
    ({"frontend": "127.0.0.1:99999"}, None, "host:port"),
    ({"timeout": 0}, None, "timeout"),
    ({"name": "lb 1"}, None, "name"),
    ({"ssh_host": "lb1.internal", "socket": None, "address": "127.0.0.1:1"}, None, "ssh_host needs socket"),
    ({"ssh_host": "lb1; reboot"}, None, "ssh_host"),
    (None, {"haproxy_server": "db 2"}, "haproxy_server"),
    (None, {"haproxy_server": "db1"}, "same haproxy_server entry"),
])
def test_bad_values_are_refused_at_load_naming_the_key(inst: dict[str, Any] | None,
                                                       db2: dict[str, Any] | None, says: str) -> None:
    data = conf(inst, db2=db2)
    one = data["switch"]["haproxy"][0]
    for k in [k for k, v in one.items() if v is None]:
        del one[k]
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert says in e.value.message and e.value.remedy


def test_unknown_keys_are_refused_everywhere() -> None:
    data = conf({"backnd": "x"})
    with pytest.raises(ConfigError) as e:
        check_keys(data, "t.toml")
    assert "unknown key 'backnd' in [[switch.haproxy]] #1; did you mean 'backend'?" in e.value.message
    with pytest.raises(ConfigError) as e:
        parse_config(conf(db2={"haproxy_srv": "x"}))
    assert "did you mean 'haproxy_server'" in e.value.message
    with pytest.raises(ConfigError) as e:
        parse_config(conf(switch={"haproxy": []}))
    assert "at least one [[switch.haproxy]]" in e.value.message


def test_ssh_transport_takes_the_switch_ssh_keys() -> None:
    cfg = parse_config(conf({"ssh_host": "lb1.internal"}, switch={"ssh_user": "ops", "ssh_port": 2222}))
    (i,) = haproxy_settings(cfg).instances
    assert i.ssh is not None
    assert (i.ssh.host, i.ssh.user, i.ssh.port, i.ssh.sudo) == ("lb1.internal", "ops", 2222, False)
    assert "lb1.internal" in i.api and "SSH" in i.api


class FakeShell:
    """Records the command line RuntimeApi sends over SSH; answers like socat would."""

    def __init__(self, rc: int = 0, out: str = "") -> None:
        self.rc, self.out = rc, out
        self.sent: list[str] = []

    def run(self, command: str, timeout: float | None = None, privileged: bool = False) -> Result:
        self.sent.append(command)
        return Result(self.rc, self.out, 0.1)


def test_ssh_command_is_quoted_and_runs_socat() -> None:
    cfg = parse_config(conf({"ssh_host": "lb1.internal"}))
    (i,) = haproxy_settings(cfg).instances
    sh = FakeShell(out=SHOW)
    found = api.RuntimeApi(i, sh).servers()  # type: ignore[arg-type]
    assert found["db1"].state == "ready"
    words = shlex.split(sh.sent[0])
    assert words[:3] == ["printf", "%s\\n", "show servers state mysql_primary"]
    assert words[3:] == ["|", "socat", "-t", "2", "stdio", "unix-connect:/run/haproxy/admin.sock"]
    failing = api.RuntimeApi(i, FakeShell(rc=1, out="socat: E connect(): No such file"))  # type: ignore[arg-type]
    with pytest.raises(api.ApiError) as e:
        failing.level()
    assert "No such file" in e.value.message and not e.value.sent


@pytest.fixture
def fake_haproxy(tmp_path: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """A unix socket that answers each connection's line with the next canned answer."""
    path = str(tmp_path / "admin.sock")
    answers: list[str] = []
    got: list[str] = []
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                got.append(c.makefile().readline().rstrip("\n"))
                c.sendall((answers.pop(0) if answers else "\n").encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path, answers, got
    srv.close()


def _inst(sock: str) -> Instance:
    return Instance("lb1", "mysql_primary", ("127.0.0.1", 3306), socket=sock, timeout=1)


def test_unix_transport_writes_and_refusals(fake_haproxy: tuple[str, list[str], list[str]]) -> None:
    path, answers, got = fake_haproxy
    a = api.RuntimeApi(_inst(path))
    answers += ["\n\n", "No such server.\n\n"]
    a.write(api.cmd_set("mysql_primary", "db1", "maint"), api.cmd_shutdown("mysql_primary", "db1"))
    assert got[0] == "set server mysql_primary/db1 state maint; shutdown sessions server mysql_primary/db1"
    with pytest.raises(api.ApiError) as e:
        a.write(api.cmd_set("mysql_primary", "dbx", "ready"))
    assert e.value.sent and "No such server" in e.value.message and "haproxy_server" in e.value.remedy


def test_unreachable_socket_says_precisely_why(tmp_path: Path) -> None:
    with pytest.raises(api.ApiError) as e:
        api.RuntimeApi(_inst(str(tmp_path / "none.sock"))).level()
    assert not e.value.sent and "No such file" in e.value.message
    assert "stats socket" in e.value.remedy and "lb1" in e.value.remedy
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # bound, never listening: a socket file HAProxy left behind
    with pytest.raises(api.ApiError) as e:
        api.RuntimeApi(_inst(str(stale))).level()
    assert not e.value.sent and "HAProxy is not running" in e.value.remedy
    tcp = Instance("lb1", "be", ("127.0.0.1", 3306), address=("127.0.0.1", 1), timeout=1)
    with pytest.raises(api.ApiError) as e:
        api.RuntimeApi(tcp).level()
    assert "TCP 127.0.0.1:1" in e.value.message and "Connection refused" in e.value.message


def test_status_flags_a_backend_that_does_not_route_to_the_writable_server() -> None:
    from roleswap.status import haproxy_problems, render_haproxy

    view = {"name": "lb1", "api": "unix socket /s", "backend": "be", "ready": ["mysql-a"],
            "servers": {"mysql-a": {"state": "ready", "server": "db1"},
                        "mysql-b": {"state": "maint", "server": "db2"}}}
    data: dict[str, Any] = {"writable": ["db1"], "haproxy": [view]}
    assert haproxy_problems(data) == []
    assert render_haproxy(data) == [
        "haproxy lb1 (unix socket /s): backend be: mysql-a (db1) ready, mysql-b (db2) maint"]
    data["writable"] = ["db2"]  # e.g. HAProxy restarted from a haproxy.cfg older than the swap
    assert haproxy_problems(data) == ["HAProxy lb1 routes writes to db1 (writable: db2)"]
    data["haproxy"] = [{"name": "lb1", "error": "cannot connect", "remedy": "start it"}]
    assert haproxy_problems(data) == ["HAProxy lb1 unreadable"]
    assert render_haproxy(data)[1].strip() == "fix: start it"


class FakeApi:
    """One instance's backend as a dict entry -> ServerState; ``down``: unreachable."""

    def __init__(self, table: dict[str, str], down: bool = False) -> None:
        self.table, self.down, self.sent = table, down, []  # type: ignore[var-annotated]

    def servers(self) -> dict[str, api.ServerState]:
        if self.down:
            raise api.ApiError("cannot connect", remedy="start it")
        return {e: api.ServerState(e, "127.0.0.1", 2 if s == "ready" else 0,
                                   1 if s == "maint" else 0) for e, s in self.table.items()}

    def write(self, *commands: str) -> None:
        if self.down:
            raise api.ApiError("cannot connect", remedy="start it")  # sent stays False
        self.sent.append(commands)
        for c in commands:
            w = c.split()
            if w[0] == "set":
                self.table[w[2].split("/")[1]] = w[4]


def _switch(apis: dict[str, FakeApi]) -> tuple[Any, Any]:
    from types import SimpleNamespace

    from roleswap.switch.haproxy import HaproxySwitch

    two = conf()
    two["switch"]["haproxy"].append({"name": "lb2", "address": "127.0.0.1:9", "frontend":
                                     "127.0.0.1:3306", "backend": "mysql_primary"})
    cfg = parse_config(two)
    sw = HaproxySwitch()
    sw.api = lambda inst: apis[inst.name]  # type: ignore[method-assign]
    state: dict[str, Any] = {}
    ctx = SimpleNamespace(config=cfg, source="db1", target="db2", state=state, notes=[],
                          remember=state.update, remember_with_end=state.update)
    return sw, ctx


def test_maint_reaches_what_it_can_and_undo_restores_only_that() -> None:
    from roleswap.switch.haproxy import HaproxyMaint

    lb1, lb2 = FakeApi({"db1": "ready", "db2": "maint"}), FakeApi({"db1": "ready", "db2": "maint"})
    sw, ctx = _switch({"lb1": lb1, "lb2": lb2})
    ctx.state["haproxy_before"] = {n: {"from": "ready", "to": "maint"} for n in ("lb1", "lb2")}
    lb2.down = True
    step = HaproxyMaint(sw)
    with pytest.raises(api.ApiError):
        step.apply(ctx)
    assert lb1.table["db1"] == "maint" and lb1.sent == [(
        "set server mysql_primary/db1 state maint", "shutdown sessions server mysql_primary/db1")]
    assert ctx.state["haproxy_maint_untouched"] == ["lb2"]  # never reached: left alone
    assert "lb1 ready" in step.undo(ctx)
    assert lb1.table["db1"] == "ready"


def test_maint_undo_never_makes_two_entries_ready() -> None:
    from roleswap.errors import StepError
    from roleswap.switch.haproxy import HaproxyMaint

    lb1, lb2 = FakeApi({"db1": "maint", "db2": "ready"}), FakeApi({"db1": "maint", "db2": "maint"})
    sw, ctx = _switch({"lb1": lb1, "lb2": lb2})
    ctx.state["haproxy_before"] = {n: {"from": "ready", "to": "maint"} for n in ("lb1", "lb2")}
    with pytest.raises(StepError) as e:
        HaproxyMaint(sw).undo(ctx)
    assert "db2's entry is still ready" in e.value.message and "recover" in e.value.remedy
    assert lb1.table == {"db1": "maint", "db2": "ready"}
