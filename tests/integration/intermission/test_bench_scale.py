"""Smoke test of scripts/bench_scale.py --quick: it runs, every section is in the JSON,
and no request was lost (the figures themselves are not judged: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.intermission.conftest import ROOT

pytestmark = pytest.mark.timeout(240)


def test_bench_scale_quick_json_has_every_section_and_nothing_lost(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=220,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["lost"] == 0 and data["failures"] == []
    for section, mode in (("processes", "own"), ("processes_host", "host")):
        # each process with its own Redis agent, then all attached to one host agent
        assert [p["n"] for p in data[section]] == data["params"]["process_counts"]
        for p in data[section]:
            assert p["mode"] == mode
            assert p["registered"] == p["n"] and p["lost"] == 0
            assert len(p["rounds"]) == data["params"]["rounds"]
            assert all(r["drained"] and r["released"] == p["n"] for r in p["rounds"])
            for key in ("pause_to_drained_ms", "resume_to_all_released_ms", "window_ms",
                        "pause_window_ms"):
                assert {"p50", "p95", "max"} <= p[key].keys()
        assert {"pause_to_drained_ms_p50", "resume_to_all_released_ms_p50", "window_ms_p50",
                "pause_window_ms_p50"} <= data[f"{section}_ratio"].keys()
    asgi, wsgi = data["held_asgi"], data["held_wsgi"]
    assert asgi["ok"] == asgi["requests"] and asgi["lost"] == 0
    assert asgi["tracemalloc_bytes_per_held"] > 0 and "rss_bytes_per_held" in asgi
    assert wsgi["ok"] == wsgi["requests"] and wsgi["lost"] == 0
    assert wsgi["held_in_gate"] == wsgi["threads"] and wsgi["released"] == wsgi["requests"]
    assert "pause -> drained" in proc.stdout and "lost requests: 0" in proc.stdout
