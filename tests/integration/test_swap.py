"""Role swaps on the real lab: writes keep flowing, nothing is lost, one writable server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from intermission.controller import Controller
from roleswap.coord.endpoint import current_primary
from tests.conftest import RunningLab
from tests.integration.swaphelp import (
    ReadOnlyWatcher,
    Writer,
    assert_same_data,
    create_writes_table,
    journal_path,
    present_ids,
    roleswap,
    snapshot,
    swap,
    wait_healthy,
)


def test_swap_there_and_back_under_writes(module_lab: RunningLab) -> None:
    lab = module_lab
    create_writes_table(lab)
    watcher = ReadOnlyWatcher(lab)
    writer = Writer(lab)
    watcher.start()
    writer.start()
    results = []
    try:
        time.sleep(0.3)
        for source, target in (("db1", "db2"), ("db2", "db1"), ("db1", "db3"), ("db3", "db1")):
            before = len(writer.acked)
            code, out = swap(lab, source, target)
            assert code == 0, out
            results.append(out)
            assert out["ok"] and out["from"] == source and out["to"] == target
            snap = wait_healthy(lab, target)
            assert snap[source]["source"] == target  # old primary demoted under the new one
            # writes resume on the new primary
            deadline = time.monotonic() + 5
            while len(writer.acked) < before + 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(writer.acked) >= before + 20
    finally:
        writer.stop()
        watcher.stop()
    assert watcher.samples > 100
    assert watcher.max_writable == 1, watcher.bad[:5]
    assert len(writer.acked) > 100
    assert_same_data(lab)
    for node in ("db1", "db2", "db3"):
        missing = set(writer.acked) - present_ids(lab, node)
        assert not missing, f"{len(missing)} acknowledged writes missing on {node}"
    for out in results:
        names = [s["name"] for s in out["steps"]]
        assert names[:3] == ["lock", "pre-sync", "pause"] and names[-1] == "unlock"
        assert all(s["status"] == "done" for s in out["steps"])
        assert 0 < out["write_block_ms"] <= out["pause_ms"] < 5000
        assert out["rolled_back"] is False


def test_json_and_human_output_hide_secrets(module_lab: RunningLab) -> None:
    lab = module_lab
    secrets = [lab.config.mysql.password.reveal(), lab.config.replication.password.reveal()]
    human = roleswap(lab, "--from", "db1", "--to", "db2", "--yes")
    assert human.returncode == 0, human.stderr
    assert "done: db2 is the primary" in human.stdout
    assert "pause" in human.stdout and "writes blocked" in human.stdout
    js = roleswap(lab, "--from", "db2", "--to", "db1", "--yes", "--json")
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert {"ok", "from", "to", "steps", "pause_ms", "write_block_ms", "rolled_back"} <= set(data)
    for s in secrets:
        assert s not in human.stdout + human.stderr + js.stdout + js.stderr
    wait_healthy(lab, "db1")


def test_endpoint_published_and_resume_payload(module_lab: RunningLab) -> None:
    lab = module_lab
    assert lab.config.redis_url is not None
    client = redis.Redis.from_url(lab.config.redis_url.reveal())
    code, out = swap(lab, "db1", "db2")
    assert code == 0, out
    pub = current_primary(client, lab.config.cluster)
    assert pub is not None and pub["name"] == "db2"
    assert pub["port"] == lab.config.servers["db2"].port
    status = Controller(client, lab.config.scope).status()
    assert not status.paused
    assert status.last_resume is not None
    assert status.last_resume.payload is not None
    assert status.last_resume.payload["primary"]["name"] == "db2"
    st = json.loads(roleswap(lab, "status", "--json").stdout)
    assert st["published_primary"]["name"] == "db2"
    assert st["traffic"]["paused"] is False and st["traffic"]["scope"] == lab.config.scope
    code, out = swap(lab, "db2", "db1")
    assert code == 0, out
    assert current_primary(client, lab.config.cluster)["name"] == "db1"  # type: ignore[index]
    wait_healthy(lab, "db1")


def test_dry_run_and_check_change_nothing(module_lab: RunningLab) -> None:
    lab = module_lab
    before = snapshot(lab)
    dry = roleswap(lab, "--from", "db1", "--to", "db2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "plan" in dry.stdout and "dry run: nothing changed" in dry.stdout
    for step in ("lock", "pre-sync", "pause", "fence", "catch-up", "promote", "publish", "resume",
                 "detach", "demote", "repoint", "verify", "unlock"):
        assert f" {step} " in dry.stdout, step
    check = roleswap(lab, "--from", "db1", "--to", "db2", "--check", "--json")
    assert check.returncode == 0
    assert json.loads(check.stdout)["ok"] is True
    assert snapshot(lab) == before


def test_without_yes_asks_and_no_means_nothing_changes(module_lab: RunningLab) -> None:
    import subprocess

    from tests.integration.swaphelp import ROLESWAP

    lab = module_lab
    before = snapshot(lab)
    res = subprocess.run([*ROLESWAP, "-c", str(lab.config_path), "--from", "db1", "--to", "db2"],
                         input="n\n", capture_output=True, text=True, timeout=60, check=False)
    assert "Swap roles: promote db2, demote db1?" in res.stdout
    assert res.returncode == 1
    assert snapshot(lab) == before


def test_the_pause_step_starts_with_the_apps_acks_already_subscribed(module_lab: RunningLab) -> None:
    """Pre-sync subscribes to the apps' acks: when the pause step begins the subscription
    exists, so no connection setup sits inside the pause window (it once cost ~1 ms)."""
    from tests.integration.swaphelp import BackgroundSwap, last_journal_step

    lab = module_lab
    subscribers = _ack_subscribers(lab)
    source, target = _next_swap(lab)
    with BackgroundSwap(lab, source, target, env={"ROLESWAP_SLEEP_AT": "pause:before=1"}) as bg:
        bg.wait_for(lambda: last_journal_step(lab) == ("pause", "running"))  # sleeps before it
        before_pause = subscribers()
        code, _data, printed = bg.result()
    assert before_pause == 1, "no subscription to the acks before the pause step"
    assert code == 0, printed
    assert subscribers() == 0  # closed when the swap ended


def test_the_pause_token_is_journaled_before_the_pause_and_nothing_inside_it(
        module_lab: RunningLab) -> None:
    """The token is chosen at pre-sync and written with its end, so the pause step makes
    no journal write (a Redis round trip inside the pause window), and recover knows the
    token even if the swap dies between setting the lease and the next write."""
    lab = module_lab
    assert lab.config.redis_url is not None
    source = _writable(lab)
    target = "db2" if source != "db2" else "db1"
    code, out = swap(lab, source, target)
    assert code == 0, out
    writes = [json.loads(line) for line in journal_path(lab).read_text().splitlines()]
    statuses = [{e["name"]: e["status"] for e in w["steps"]} for w in writes]
    first = next(i for i, st in enumerate(statuses) if st.get("pause") == "running")
    token = writes[first]["state"].get("pause_token")
    assert token, "the pause was journaled as running without its token"
    assert statuses[first + 1].get("pause") == "done", "a journal write inside the pause step"
    resumed = Controller(lab.config.redis_url.reveal(), lab.config.scope).read().last_resume
    assert resumed is not None and resumed.token == token  # the pause that ran had that token


def test_the_ack_subscription_is_closed_after_the_pause_window_not_inside_it(
        module_lab: RunningLab) -> None:
    """Closing the subscription (0.15 ms) is no part of ending the pause: when the resume
    step has finished it is still open, and the swap's end closes it (nothing leaks)."""
    from roleswap import Cluster
    from roleswap.events import Event, StepDone

    lab = module_lab
    subscribers = _ack_subscribers(lab)
    source, target = _next_swap(lab)
    seen: dict[str, int] = {}

    def on_event(e: Event) -> None:
        if isinstance(e, StepDone) and e.step.name == "resume":
            seen["at resume's end"] = subscribers()

    result = Cluster.from_config(lab.config_path).swap(source, target, on_event=on_event)
    assert result.ok, result
    assert seen == {"at resume's end": 1}, "the subscription was closed inside the window"
    assert subscribers() == 0, "left open after the swap"


def _ack_subscribers(lab: RunningLab) -> Callable[[], int]:
    """How many subscribe to the lab's acks channel (the pauser's subscription)."""
    from intermission.protocol import acks_channel

    assert lab.config.redis_url is not None
    r = redis.Redis.from_url(lab.config.redis_url.reveal())
    channel = acks_channel(lab.config.scope)
    return lambda: int(dict(r.pubsub_numsub(channel))[channel.encode()])


def _next_swap(lab: RunningLab) -> tuple[str, str]:
    source = _writable(lab)
    return source, "db2" if source != "db2" else "db1"


def _writable(lab: RunningLab) -> str:
    snap = snapshot(lab)
    return next(name for name, s in snap.items() if not s["read_only"])
