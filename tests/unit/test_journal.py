"""The journal's local file: append-only, newest complete record wins (no Redis)."""

from __future__ import annotations

import json
from pathlib import Path

from roleswap.coord.journal import Journal


def test_round_trip_and_interrupted(tmp_path: Path) -> None:
    j = Journal(None, "c", tmp_path)
    j.begin("abc", "db1", "db2", "gtid", ["lock", "fence"], {"pause_ttl": 30})
    j.step("lock", "running")
    j.step("lock", "done", 1.234)
    j.set_state(final_position={"gtid": "0-1-5"})
    j.close()
    again = Journal(None, "c", tmp_path)
    rec = again.interrupted()
    assert rec is not None and rec["swap_id"] == "abc"
    assert again.last_status() == {} and rec["state"]["final_position"]["gtid"] == "0-1-5"
    again.adopt(rec)
    assert again.last_status() == {"lock": "done"}
    again.set_phase("done")
    assert Journal(None, "c", tmp_path).interrupted() is None


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    j = Journal(None, "c", tmp_path)
    j.begin("abc", "db1", "db2", "gtid", [], {})
    j.step("lock", "done", 1.0)
    j.close()
    with open(j.path, "a") as f:
        f.write('{"swap_id": "abc", "phase": "runn')  # a crash in the middle of a write
    rec = Journal(None, "c", tmp_path).load()
    assert rec is not None and rec["steps"][-1]["name"] == "lock"


def test_file_is_private(tmp_path: Path) -> None:
    j = Journal(None, "c", tmp_path)
    j.begin("abc", "db1", "db2", "gtid", [], {})
    j.close()
    assert (j.path.stat().st_mode & 0o777) == 0o600
    assert json.loads(j.path.read_text().splitlines()[-1])["seq"] == 1
