"""lab restart's option handling: checked before anything stops, written in place."""

from __future__ import annotations

import pytest

from roleswap.errors import LabError, UsageError
from roleswap.lab.restart import parse_settings, with_settings

CNF = "[mariadbd]\nport=3307\ninnodb_buffer_pool_size=32M\n\n[client]\nport=3307\n"


def test_replaces_in_the_server_section_only_and_appends_new_keys() -> None:
    out = with_settings(CNF, {"innodb-buffer-pool-size": "64M", "max_connections": "50"})
    assert out.splitlines() == ["[mariadbd]", "max_connections=50", "port=3307",
                                "innodb_buffer_pool_size=64M", "", "[client]", "port=3307"]


def test_mysqld_section_and_no_section() -> None:
    assert "long_query_time=2" in with_settings("[mysqld]\nport=1\n", {"long_query_time": "2"})
    with pytest.raises(LabError):
        with_settings("[client]\nport=1\n", {"long_query_time": "2"})


@pytest.mark.parametrize("item,needle", [
    ("innodb_buffer_pool_size", "is not KEY=VALUE"),
    ("x=1; rm -rf /", "is not KEY=VALUE"),
    ("Bad Key=1", "is not KEY=VALUE"),
    ("port=3306", "the lab manages port itself"),
    ("server-id=9", "the lab manages server-id itself"),
])
def test_bad_settings_are_refused(item: str, needle: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_settings([item])
    assert needle in e.value.message and e.value.remedy


def test_parse() -> None:
    assert parse_settings(["innodb_buffer_pool_size=64M", "Max_Connections=50"]) == {
        "innodb_buffer_pool_size": "64M", "max_connections": "50"}
