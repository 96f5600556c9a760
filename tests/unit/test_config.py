"""Config parsing and validation (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roleswap.config import Secret, load_config, mask_url, parse_config
from roleswap.errors import ConfigError


def base(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "cluster": "shop",
        "mysql": {"user": "roleswap", "password": "s3cret-ctl"},
        "replication": {"user": "repl", "password": "s3cret-repl"},
        "redis": {"url": "redis://:s3cret-redis@127.0.0.1:6379/0"},
        "servers": {"db1": {"host": "127.0.0.1", "port": 3306},
                    "db2": {"host": "db2.internal", "port": 3307}},
    }
    data.update(over)
    return data


def test_valid_config_defaults() -> None:
    cfg = parse_config(base())
    assert cfg.cluster == "shop" and cfg.scope == "shop" and cfg.switch_method == "endpoint"
    assert cfg.servers["db2"].address == "db2.internal:3307"
    assert cfg.mysql.password.reveal() == "s3cret-ctl"
    assert cfg.redis_url_masked == "redis://:***@127.0.0.1:6379/0"


def test_secrets_never_show_in_repr() -> None:
    cfg = parse_config(base())
    text = repr(cfg) + str(cfg)
    for secret in ("s3cret-ctl", "s3cret-repl", "s3cret-redis"):
        assert secret not in text
    assert repr(Secret("x")) == "Secret('***')"


@pytest.mark.parametrize("url,masked", [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
    ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_password_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS_PW", "from-env")
    (tmp_path / "pw").write_text("from-file\n")
    cfg = parse_config(base(mysql={"user": "u", "password_env": "RS_PW"},
                            replication={"user": "r", "password_file": "pw"}), base_dir=tmp_path)
    assert cfg.mysql.password.reveal() == "from-env"
    assert cfg.replication.password.reveal() == "from-file"


@pytest.mark.parametrize("data,needle", [
    (base(mysql={"user": "u"}), "missing mysql.password"),
    (base(mysql={"user": "u", "password_env": "RS_NOT_SET_ANYWHERE"}), "is not set"),
    (base(servers={"db1": {"host": "h", "port": 70000}}), "port must be an integer"),
    (base(servers={"db1": {"host": "h; rm -rf /"}}), "not a host name"),
    (base(servers={"bad name": {"host": "h"}}), "unsupported characters"),
    (base(servers={}), "is empty"),
    (base(switch={"method": "teleport"}), "not supported"),
    (base(cluster="a b"), "unsupported characters"),
    ({k: v for k, v in base().items() if k != "replication"}, "missing [replication]"),
])
def test_invalid_configs_name_the_key_and_the_fix(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert needle in err.value.message
    assert err.value.remedy
    assert err.value.exit_code == 2


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("cluster = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_unknown_server_lists_the_known_ones() -> None:
    cfg = parse_config(base())
    with pytest.raises(ConfigError) as err:
        cfg.server("db9")
    assert "db1, db2" in err.value.remedy


# -- unknown keys are refused, naming the key, its section and the nearest valid key ------
@pytest.mark.parametrize("data,needle", [
    (base(switch={"methd": "vip"}), "unknown key 'methd' in [switch]; did you mean 'method'?"),
    (base(clustr="x"), "unknown key 'clustr' at the top level; did you mean 'cluster'?"),
    (base(swich={"method": "vip"}), "unknown section [swich]; did you mean [switch]?"),
    (base(mysql={"user": "u", "password": "p", "pasword": "p"}),
     "unknown key 'pasword' in [mysql]; did you mean 'password'?"),
    (base(mysql={"user": "u", "password": "p", "conect_timeout": 2}),
     "unknown key 'conect_timeout' in [mysql]; did you mean 'connect_timeout'?"),
    (base(replication={"user": "u", "password": "p", "tls": True}),
     "unknown key 'tls' in [replication]; it belongs in [mysql]"),
    (base(redis={"uri": "redis://h:1/0"}), "unknown key 'uri' in [redis]; did you mean 'url'?"),
    (base(intermission={"scop": "x"}), "unknown key 'scop' in [intermission]; did you mean 'scope'?"),
    (base(switch={"method": "vip", "vip": "10.0.0.50/24", "arpingcount": 3}),
     "unknown key 'arpingcount' in [switch]; did you mean 'arping_count'?"),
    (base(switch={"ssh_host": "x"}), "unknown key 'ssh_host' in [switch]; it belongs in [servers.<name>]"),
    (base(hooks={"before_fenc": "/bin/true"}),
     "unknown key 'before_fenc' in [hooks]; did you mean 'before_fence'?"),
    (base(hooks={"after_resume_undo": "/bin/true"}), "never undone"),
    (base(servers={"db1": {"host": "h", "prot": 3306}}),
     "unknown key 'prot' in [servers.db1]; did you mean 'port'?"),
    (base(servers={"db1": {"host": "h", "interfce": "eth1"}}),
     "unknown key 'interfce' in [servers.db1]; did you mean 'interface'?"),
    (base(servers={"db1": {"host": "h", "replication_hots": "x"}}),
     "unknown key 'replication_hots' in [servers.db1]; did you mean 'replication_host'?"),
    (base(lab={"app_user": "a", "app_password": "p", "databse": "x"}),
     "unknown key 'databse' in [lab]; did you mean 'database'?"),
    (base(journal={"dri": "/tmp"}), "unknown key 'dri' in [journal]; did you mean 'dir'?"),
])
def test_unknown_keys_are_refused_with_the_nearest_key(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="cfg.toml")
    assert needle in err.value.message, err.value.message
    assert err.value.message.startswith("cfg.toml: ")
    assert err.value.exit_code == 2
    assert "the keys of" in err.value.remedy
    for secret in ("s3cret-ctl", "s3cret-repl", "s3cret-redis"):
        assert secret not in err.value.message + err.value.remedy


def test_unknown_keys_are_checked_before_missing_ones() -> None:
    # a misspelt password must be named as such, not reported as "missing mysql.password"
    with pytest.raises(ConfigError, match="did you mean 'password'"):
        parse_config(base(mysql={"user": "u", "passwrd": "x"}))


def test_every_unknown_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(base(switch={"methd": "none"}, journal={"dri": "/x"}))
    assert "'methd'" in err.value.message and "'dri'" in err.value.message


@pytest.mark.parametrize("data,needle", [
    (base(redis={"url": "http://h:1/0"}), "redis.url must start with"),
    (base(hooks={"timeout": "soon"}), "hooks.timeout must be a positive number"),
    (base(hooks={"before_fence": 3}), "hooks.before_fence must be a command string"),
    (base(servers={"db1": {"host": "h", "replication_host": "a b"}}), "not a host name"),
    (base(servers={"db1": {"host": "h", "socket": 3}}), "servers.db1.socket must be"),
    (base(servers={"db1": {"host": "h", "replication_port": "3306"}}),
     "servers.db1.replication_port must be an integer"),
    (base(servers={"db1": {"host": "h", "replication_port": 70000}}),
     "servers.db1.replication_port must be an integer"),
    (base(servers={"db1": {"host": "h", "replication_port": True}}),
     "servers.db1.replication_port must be an integer"),
])
def test_ill_typed_values_are_refused(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert needle in err.value.message
    assert "s3cret-redis" not in err.value.message


def test_all_known_keys_load(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x\n")
    cfg = parse_config(base(
        mysql={"user": "u", "password_file": "pw", "connect_timeout": 2, "tls": False},
        redis={"url": "redis://h:1/0"}, intermission={"scope": "s"},
        switch={"method": "vip", "vip": "10.9.9.50/24", "interface": "eth0", "arping_count": 2,
                "verify_timeout": 5, "vip_port": 3306, "ssh_port": 22, "ssh_user": "root",
                "ssh_key": "/k", "known_hosts": "/kh", "ssh_accept_new": False, "sudo": False,
                "remote_path": "/usr/sbin:/usr/bin", "ssh_timeout": 5},
        hooks={"before_fence": "/bin/true", "before_fence_undo": "/bin/true",
               "after_promote": "/bin/true", "after_promote_undo": "/bin/true",
               "after_resume": "/bin/true", "timeout": 30},
        servers={"db1": {"host": "10.9.9.11", "port": 3306, "socket": "/run/s.sock",
                         "replication_host": "db1.internal", "replication_port": 3307,
                         "ssl_ca": "/ca.pem",
                         "ssh_host": "db1-mgmt", "interface": "bond0", "sudo": True}},
        lab={"dir": "/lab", "app_user": "app", "app_password": "p", "database": "app"},
        journal={"dir": "/var/lib/roleswap"}), base_dir=tmp_path)
    assert cfg.switch_method == "vip" and cfg.servers["db1"].extra["interface"] == "bond0"


def _lab_for_config(tmp_path: Path) -> Any:
    from roleswap.lab.lab import Lab, LabNode

    lab = Lab(tmp_path, cluster="lab")
    lab.nodes = [LabNode("redis", "redis", 1, "127.0.0.1", 6379, str(tmp_path / "redis"), "x")] + [
        LabNode(f"db{i}", "mariadb", 1, "198.18.71.1" + str(i), 3306, str(tmp_path / f"db{i}"), "x")
        for i in (1, 2, 3)]
    return lab


def test_configs_written_by_lab_up_load(tmp_path: Path) -> None:
    import ipaddress

    from roleswap.lab.hosts_up import write_hosts_config
    from roleswap.lab.lab import write_config
    from roleswap.lab.mariadb import Accounts

    acc = Accounts("roleswap", "pw1", "repl", "pw2", "app", "pw3")
    lab = _lab_for_config(tmp_path)
    cfg = load_config(write_config(lab, acc))
    assert cfg.switch_method == "endpoint" and cfg.lab is not None and cfg.servers["db1"].socket
    keys = {"key": tmp_path / "id", "known_hosts": tmp_path / "kh"}
    hcfg = load_config(write_hosts_config(lab, acc, keys, "198.18.71.10",
                                          ipaddress.IPv4Network("198.18.71.0/24")))
    assert hcfg.switch_method == "vip" and hcfg.switch["vip"] == "198.18.71.10/24"


def _readme() -> str:
    return (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_toml_examples_have_only_known_keys(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    import textwrap
    import tomllib

    from roleswap.config_keys import check_keys

    blocks = [textwrap.dedent(b) for b in re.findall(r"```toml\n(.*?)```", _readme(), re.S)]
    assert len(blocks) >= 3
    for block in blocks:
        check_keys(tomllib.loads(block), "README")
    main = next(b for b in blocks if b.lstrip().startswith("cluster"))
    (tmp_path / "repl.pw").write_text("r\n")
    monkeypatch.setenv("ROLESWAP_MYSQL_PASSWORD", "m")
    cfg = parse_config(tomllib.loads(main.replace("/etc/roleswap/repl.pw", str(tmp_path / "repl.pw"))))
    assert cfg.cluster == "shop"


def test_readme_lists_every_config_key() -> None:
    from roleswap.config_keys import markdown

    assert markdown() in _readme(), "regenerate the README table with roleswap.config_keys.markdown()"


def test_every_key_the_code_reads_is_in_the_tables() -> None:
    """Keys read through Config.switch / ServerConfig.extra / hooks (switch methods, ssh,
    replication_host, ssl_ca) must be accepted, or a valid config would be refused."""
    import re

    from roleswap.config_keys import SECTIONS
    from roleswap.switch.hook import HOOK_PHASES

    pattern = re.compile(r'(?:setting\(config, server, |\bsw\.get\(|switch\.get\(|extra\.get\(|'
                         r'hooks\.get\(|hooks\[)"(\w+)"')
    root = Path(__file__).resolve().parents[2] / "roleswap"
    read = {m.group(1) for p in root.rglob("*.py") for m in pattern.finditer(p.read_text())}
    assert {"vip", "ssh_host", "interface", "replication_host", "replication_port", "ssl_ca",
            "timeout"} <= read, read
    known = set(SECTIONS["switch"]) | set(SECTIONS["servers.<name>"]) | set(SECTIONS["hooks"])
    assert read - known == set()
    for phase in HOOK_PHASES:
        assert phase in SECTIONS["hooks"]
    assert {"before_fence_undo", "after_promote_undo"} <= set(SECTIONS["hooks"])
