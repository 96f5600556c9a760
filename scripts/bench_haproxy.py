"""Bench section ``haproxy``, run by scripts/bench_swap.py (issue 14): "ours, haproxy".

A loopback lab with one HAProxy in front of it (``lab up --haproxy``: writes backend
``mysql_primary``, only the primary's entry ready), the demo app connecting to HAProxy's
frontend (a fixed address, as with a VIP), and --haproxy-swaps swaps of ours with the
``haproxy`` switch method under the same load as the other columns.  No root needed;
skipped (and said why) without a ``haproxy`` binary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roleswap.demo.haproxylab import frontend, haproxy_problems, haproxy_unavailable, haproxy_version
from roleswap.demo.runner import start_wsgi
from roleswap.demo.scenario import ScenarioResult, run_scenario
from roleswap.lab import Lab, lab_down, lab_up

Phase = Callable[[ScenarioResult, str], dict[str, Any]]


def haproxy_section(tmp: Path, server: str, swaps: int, common: dict[str, Any], show: Any,
                    phase: Phase, apps: list[Any], labs: list[Path],
                    name: str = "ours, haproxy") -> dict[str, Any]:
    """``swaps`` swaps of ours with the haproxy method; the app connects through HAProxy."""
    why_not = "--haproxy-swaps 0" if swaps < 1 else haproxy_unavailable()
    if why_not is not None:
        print(f"{name}: skipped ({why_not})", flush=True)
        return {"skipped": why_not}
    lab_dir = tmp / f"hlab-{server}"
    labs.append(lab_dir)
    t = time.monotonic()
    lab: Lab = lab_up(lab_dir, haproxy=True, server=server)
    app = start_wsgi(lab.config_path, tmp / f"happ-{server}", workers=4, threads=8)
    apps.append(app)
    version = haproxy_version()
    print(f"{name}: {version}, frontend {frontend(lab)} (lab up in {time.monotonic() - t:.1f} s):",
          flush=True)
    try:
        res = run_scenario(lab.config_path, app.url, swaps=swaps, pause=True, progress=show, **common)
        out = phase(res, name)
        out["problems"] += haproxy_problems(lab.config_path, res.consistency.primary)
        unmoved = [f"{s.source}->{s.target}" for s in res.swaps if s.ok and not any(
            st.get("name") == "haproxy-ready" for st in s.steps)]
        if unmoved:
            out["problems"].append(f"swap(s) without a haproxy-ready step: {', '.join(unmoved)}")
        out.update(haproxy=version, frontend=frontend(lab), backend="mysql_primary")
    finally:
        apps.remove(app)
        app.stop()
        labs.remove(lab_dir)
        lab_down(lab_dir)
    return out
