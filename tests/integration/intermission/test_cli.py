"""The ``intermission`` CLI against a real Redis (and a real in-process middleware)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from intermission import Controller
from intermission.cli import cli
from intermission.wsgi import IntermissionMiddleware
from roleswap.lab.procs import free_port
from tests.integration.intermission.conftest import new_scope, wait_for, wait_processes

pytestmark = pytest.mark.timeout(30)


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_pause_status_resume_round_trip(redis_url: str) -> None:
    scope = new_scope()
    app = IntermissionMiddleware(lambda e, s: [b""], redis_url=redis_url, scope=scope)
    app.start()
    assert wait_processes(Controller(redis_url, scope), 1)
    try:
        code, out, _ = run("--redis", redis_url, "pause", "--scope", scope, "--ttl", "30",
                           "--reason", "db switchover", "--wait-drain", "3")
        assert code == 0, out
        token = re.search(r"token ([0-9a-f]{24})", out).group(1)  # type: ignore[union-attr]
        assert "not renewed" in out and "drained after" in out
        code, out, _ = run("--redis", redis_url, "status", "--scope", scope)
        assert code == 0
        assert "PAUSED" in out and "db switchover" in out and token in out
        assert "1 live" in out and "yes" in out  # the process acknowledged
        code, out, _ = run("--redis", redis_url, "status", "--scope", scope, "--json")
        data = json.loads(out)
        assert data["paused"] and data["lease"]["token"] == token
        assert data["processes"][0]["acked_token"] == token
        assert "held_total" in data["processes"][0]["metrics"]
        code, out, _ = run("--redis", redis_url, "pause", "--scope", scope)
        assert code == 4 and "already paused" in _ + out
        code, out, _ = run("--redis", redis_url, "resume", "--scope", scope,
                           "--token", "0" * 24)
        assert code == 4 and "NOT ended" in out
        code, out, _ = run("--redis", redis_url, "resume", "--scope", scope, "--token", token,
                           "--payload", '{"primary": "db2"}')
        assert (code, out.strip()) == (0, f"resumed scope {scope!r}")
        code, out, _ = run("--redis", redis_url, "resume", "--scope", scope)
        assert code == 0 and "not paused" in out
        code, out, _ = run("--redis", redis_url, "status", "--scope", scope)
        assert "not paused" in out and "last resume" in out
    finally:
        app.stop()


def test_cli_pause_is_not_renewed_and_uses_env_url(redis_url: str) -> None:
    scope = new_scope()
    env = {"INTERMISSION_REDIS_URL": redis_url}
    code, _out, _ = run("pause", "--scope", scope, "--ttl", "0.4", env=env)
    assert code == 0
    assert wait_for(lambda: "not paused" in run("status", "--scope", scope, env=env)[1], 10.0)


def test_help_says_the_pause_is_not_renewed() -> None:
    code, out, _ = run("pause", "--help")
    assert code == 0 and "NOT renewed" in out and "INTERMISSION_REDIS_URL" not in out
    code, out, _ = run("--help")
    assert "INTERMISSION_REDIS_URL" in out


def test_unreachable_redis_exits_1_and_masks_password() -> None:
    url = f"redis://app:hunter2@127.0.0.1:{free_port()}/0"
    code, out, err = run("--redis", url, "status", "--scope", "web")
    assert code == 1
    assert "hunter2" not in out + err
    assert "app:***@127.0.0.1" in err and "remedy:" in err


def test_bad_option_values(redis_url: str) -> None:
    code, _, err = run("--redis", redis_url, "pause", "--scope", "web", "--ttl", "-1")
    assert code == 2 and "ttl must be" in err
    code, _, err = run("--redis", redis_url, "resume", "--scope", "web", "--payload", "{nope")
    assert code == 2 and "not JSON" in err
    code, _, err = run("--redis", redis_url, "status", "--scope", "bad scope!")
    assert code == 2 and "scope must be" in err
