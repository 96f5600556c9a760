"""GTID positions as roleswap prints, journals and compares them: one canonical line on
every flavor.  On MySQL a primary that took writes under two server UUIDs prints
``gtid_executed`` as ``"uuid1:1,\\nuuid2:1-3"`` (its own order, a line break between UUID
sets); every step detail, the journal's final position, `status` and its JSON carry the
canonical text instead, and fence-check compares by value."""

from __future__ import annotations

import json
from typing import Any

from roleswap.mysql.gtid import canonical_gtid_text
from tests.conftest import RunningLab
from tests.integration.swaphelp import journal_path, roleswap, swap, wait_healthy


def _journal_state(lab: RunningLab) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(journal_path(lab).read_text().splitlines()[-1])["state"]
    return state


def test_positions_of_two_origins_are_one_canonical_line(writes_lab: RunningLab) -> None:
    lab = writes_lab
    code, out = swap(lab, "db1", "db2")
    assert code == 0, out
    wait_healthy(lab, "db2")
    lab.query("db2", "INSERT INTO app.writes (n) VALUES (7)")  # db2's own GTID: a second origin
    try:
        code, out = swap(lab, "db2", "db1")
        assert code == 0, out
        wait_healthy(lab, "db1")
    finally:
        if code != 0:
            roleswap(lab, "recover", "--yes")
    raw = str(lab.run("db1", [lab.dialect("db1").gtid_position()])[0]["g"])
    canonical = canonical_gtid_text(raw)
    assert canonical and "\n" not in canonical and " " not in canonical
    assert lab.gtid_position("db1") == canonical
    details = {s["name"]: s["detail"] for s in out["steps"]}
    assert details["catch-up"] == canonical
    assert details["fence-check"] == f"db2 still at {canonical}"
    assert details["verify"] == f"2 replica(s) at {canonical}"
    assert _journal_state(lab)["final_position"] == {"gtid": canonical}
    status = roleswap(lab, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = json.loads(status.stdout)["servers"]
    assert {r["name"]: r["gtid_position"] for r in rows} == dict.fromkeys(("db1", "db2", "db3"),
                                                                          canonical)
    text = roleswap(lab, "status").stdout
    assert all(line.endswith(canonical) for line in text.splitlines()[2:5]), text
