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
