"""Binlog file/position topologies and the hook / none switch methods."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roleswap.lab import lab_down
from tests.conftest import RunningLab, start_lab
from tests.integration.swaphelp import (
    ReadOnlyWatcher,
    Writer,
    assert_same_data,
    create_writes_table,
    present_ids,
    roleswap,
    snapshot,
    swap,
    wait_healthy,
)


@pytest.fixture(scope="module")
def filepos_lab(tmp_path_factory: pytest.TempPathFactory,
                server_flavor: str) -> Iterator[RunningLab]:
    started = start_lab(tmp_path_factory.mktemp("fplab") / "lab", server_flavor, gtid=False)
    yield RunningLab(started)
    lab_down(started.dir)


def using_gtid(lab: RunningLab) -> dict[str, str]:
    """Using_Gtid of every replica (nodes without replication are left out)."""
    out = {}
    for n in ("db1", "db2", "db3"):
        r = lab.replica(n)
        if r is not None:
            out[n] = r.using_gtid
    return out


def test_filepos_swaps_under_writes(filepos_lab: RunningLab) -> None:
    lab = filepos_lab
    assert set(using_gtid(lab).values()) == {"No"}
    create_writes_table(lab)
    writer, watcher = Writer(lab), ReadOnlyWatcher(lab)
    writer.start()
    watcher.start()
    try:
        time.sleep(0.3)
        for source, target in (("db1", "db2"), ("db2", "db1")):
            code, out = swap(lab, source, target)
            assert code == 0, json.dumps({k: out.get(k) for k in ("error", "steps", "notes")})
            checks = {c["name"]: c["message"] for c in out["checks"]}
            assert "file/position" in checks["mode"]
            wait_healthy(lab, target)
            time.sleep(0.3)
    finally:
        writer.stop()
        watcher.stop()
    assert watcher.max_writable == 1, watcher.bad[:3]
    # still file/position replication after the swaps (not silently switched to GTID)
    assert set(using_gtid(lab).values()) == {"No"}
    assert len(writer.acked) > 50
    assert_same_data(lab)
    for node in ("db1", "db2", "db3"):
        assert not set(writer.acked) - present_ids(lab, node), node


def test_filepos_siblings_do_not_get_the_new_primarys_writes_twice(filepos_lab: RunningLab) -> None:
    """File/position mode, writes landing on the new primary while the swap waits before
    repoint: the demoted old primary must not relay them to a sibling that is then
    pointed at the new primary's position from before them (error 1062 on the sibling,
    exit 5: it did, 6 swaps of 8 under load, before the siblings were detached first)."""
    lab = filepos_lab
    create_writes_table(lab)
    writer = Writer(lab)
    writer.start()
    try:
        time.sleep(0.3)
        for source, target in (("db1", "db2"), ("db2", "db1")):
            code, out = swap(lab, source, target, env={"ROLESWAP_SLEEP_AT": "repoint:before=1"})
            assert code == 0, json.dumps({k: out.get(k) for k in ("error", "steps", "notes")})
            wait_healthy(lab, target)
    finally:
        writer.stop()
    assert len(writer.acked) > 50
    assert_same_data(lab)
    for node in ("db1", "db2", "db3"):
        assert not set(writer.acked) - present_ids(lab, node), node


def hook_config(lab: RunningLab, tmp_path: Path, hooks: dict[str, str]) -> str:
    text = lab.config_path.read_text().replace('method = "endpoint"', 'method = "hook"')
    text += "\n[hooks]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in hooks.items())
    cfg = tmp_path / "hooks.toml"
    cfg.write_text(text)
    os.chmod(cfg, 0o600)
    return str(cfg)


def script(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_hook_method_runs_hooks_with_topology_env(module_lab: RunningLab, tmp_path: Path) -> None:
    lab = module_lab
    log = tmp_path / "hooks.log"
    rec = script(tmp_path, "rec.sh",
                 f'echo "$ROLESWAP_PHASE $ROLESWAP_FROM $ROLESWAP_TO $ROLESWAP_TO_PORT" >> {log}\n')
    cfg = hook_config(lab, tmp_path, {"before_fence": rec, "after_promote": rec,
                                      "after_resume": rec})
    res = roleswap(cfg, "--from", "db1", "--to", "db2", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    port = lab.config.servers["db2"].port
    assert log.read_text().splitlines() == [f"before_fence db1 db2 {port}",
                                            f"after_promote db1 db2 {port}",
                                            f"after_resume db1 db2 {port}"]
    names = [s["name"] for s in json.loads(res.stdout)["steps"]]
    assert names.index("hook:before_fence") < names.index("fence")
    assert names.index("promote") < names.index("hook:after_promote") < names.index("resume")
    back = roleswap(cfg, "--from", "db2", "--to", "db1", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    wait_healthy(lab, "db1")


def test_failing_hook_rolls_back_and_runs_undo_hook(module_lab: RunningLab, tmp_path: Path) -> None:
    lab = module_lab
    wait_healthy(lab, "db1")
    before = snapshot(lab)
    undo_log = tmp_path / "undo.log"
    ok = script(tmp_path, "ok.sh", "exit 0\n")
    undo = script(tmp_path, "undo.sh", f'echo "$ROLESWAP_PHASE" >> {undo_log}\n')
    bad = script(tmp_path, "bad.sh", 'echo "proxy refused the new primary" >&2\nexit 7\n')
    cfg = hook_config(lab, tmp_path, {"after_promote": ok, "after_promote_undo": undo,
                                      "after_resume": bad})
    # after_resume failures happen after the point of no return: reported, recover finishes
    res = roleswap(cfg, "--from", "db1", "--to", "db2", "--yes", "--json")
    assert res.returncode == 5, res.stdout
    assert "exited with 7" in json.loads(res.stdout)["error"]["message"]
    assert roleswap(cfg, "recover", "--yes").returncode != 0  # the hook still fails
    cfg = hook_config(lab, tmp_path, {"after_promote": ok, "after_promote_undo": undo})
    assert roleswap(cfg, "recover", "--yes").returncode == 0
    assert roleswap(cfg, "--from", "db2", "--to", "db1", "--yes").returncode == 0
    wait_healthy(lab, "db1")
    # a failing after_promote hook rolls everything back, running its undo hook
    cfg = hook_config(lab, tmp_path, {"before_fence": ok, "after_promote": bad,
                                      "after_promote_undo": undo})
    res = roleswap(cfg, "--from", "db1", "--to", "db2", "--yes", "--json")
    assert res.returncode == 4, res.stdout
    assert "proxy refused" in json.loads(res.stdout)["error"]["message"]
    assert undo_log.read_text().splitlines()[-1] == "after_promote_undo"
    assert snapshot(lab) == before


def test_hook_preflight_refuses_missing_executable(module_lab: RunningLab, tmp_path: Path) -> None:
    cfg = hook_config(module_lab, tmp_path, {"before_fence": str(tmp_path / "nope.sh")})
    res = roleswap(cfg, "--from", "db1", "--to", "db2", "--yes", "--json")
    assert res.returncode == 3
    fails = [c for c in json.loads(res.stdout)["checks"] if c["status"] == "fail"]
    assert fails and "not an executable" in fails[0]["message"]


def test_switch_none_and_no_pause(module_lab: RunningLab) -> None:
    lab = module_lab
    wait_healthy(lab, "db1")
    code, out = swap(lab, "db1", "db2", "--switch", "none", "--no-pause")
    assert code == 0, out
    names = [s["name"] for s in out["steps"]]
    assert "pause" not in names and "publish" not in names
    wait_healthy(lab, "db2")
    code, out = swap(lab, "db2", "db1")
    assert code == 0, out
    wait_healthy(lab, "db1")
