"""Bench sections on other topologies, run by scripts/bench_swap.py (issue 13).

* replicas: swaps on labs of 2, 4, 6 ... replicas: total, pause window, repoint step,
  and whether the repoint of the siblings ran inside the pause window (it must not: the
  step order and the swap's ``windows`` from ``roleswap --events`` say).
* flavors: "ours" per server flavor with the endpoint switch (a loopback lab) and, as
  root, with the vip switch (a hosts lab: each server in a network namespace with sshd).

Also the ``--events`` swapper the sections share: each swap's SwapRun, its ``windows``
(monotonic seconds, this process's clock) and its steps in order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roleswap.demo.hostslab import BENCH_SUBNETS, hosts_unavailable, pick_subnet, vip_address, vip_problems
from roleswap.demo.runner import start_wsgi
from roleswap.demo.scenario import ScenarioResult, run_scenario
from roleswap.demo.swaps import SwapRun, haproxy_move_ms
from roleswap.lab import Lab, lab_down, lab_up

Phase = Callable[[ScenarioResult, str], dict[str, Any]]


def r1(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def stats(values: list[float]) -> dict[str, float | None]:
    v = sorted(values)
    if not v:
        return {"p50": None, "max": None}
    return {"p50": r1(v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2),
            "max": r1(v[-1])}


# ------------------------------------------------------------------ swaps with their windows
@dataclass
class Swapped:
    """One ``roleswap --events`` swap: the SwapRun, its windows and the steps in order."""

    run: SwapRun
    windows: dict[str, list[float]] = field(default_factory=dict)
    step_events: list[dict[str, Any]] = field(default_factory=list)  # as they came; "at": Unix time
    clock_offset: float = 0.0  # time.time() - time.monotonic() here, to put "at" on the windows' clock


def swap_events(config_path: Path | str, source: str, target: str,
                on_step: Callable[[dict[str, Any]], None] | None = None,
                timeout: float = 120.0) -> Swapped:
    """``roleswap --from S --to T --yes --events``; ``on_step`` sees each step event as it comes."""
    argv = [sys.executable, "-m", "roleswap", "-c", str(config_path), "--from", source, "--to", target,
            "--yes", "--events"]
    final: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    t0 = time.monotonic()
    offset = time.time() - t0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if time.monotonic() - t0 > timeout:
                    proc.kill()
                    break
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict) and ev.get("event") == "step":
                    steps.append(ev)
                    if on_step is not None:
                        on_step(ev)
                elif isinstance(ev, dict) and ev.get("event") == "result":
                    final = ev
            rc = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    run = SwapRun(source, target, rc, t0, time.monotonic())
    if not final:
        run.error = f"no result event from roleswap (exit {rc}): {stderr.strip()[-300:]}"
        return Swapped(run)
    run.ok = bool(final.get("ok")) and rc == 0
    run.pause_ms, run.write_block_ms = final.get("pause_ms"), final.get("write_block_ms")
    run.total_ms, run.vip_move_ms = final.get("total_ms"), final.get("vip_move_ms")
    run.haproxy_move_ms = haproxy_move_ms(final)
    run.rolled_back = bool(final.get("rolled_back"))
    run.steps = list(final.get("steps") or [])
    run.notes = [str(n) for n in final.get("notes") or []]
    if isinstance(final.get("error"), dict):
        run.error = str(final["error"].get("message", ""))
    windows = {str(k): [float(x) for x in v] for k, v in (final.get("windows") or {}).items()
               if isinstance(v, list) and len(v) == 2}
    if hasattr(run, "windows"):  # SwapRun keeps them too (its as_dict, the bench's per_swap)
        run.windows = {k: (v[0], v[1]) for k, v in windows.items()}
    return Swapped(run, windows, steps, offset)


def step_order(s: Swapped, name: str) -> dict[str, Any]:
    """Where step ``name`` ran against the pause window: after resume in the step order, and
    when it started (its step event's end time, ``at``, minus its duration) against the end of
    the pause window (1 ms tolerance: ``at`` has millisecond resolution)."""
    names = [st.get("name") for st in s.run.steps]
    if name not in names:
        return {"ran": False}
    i = names.index(name)
    out: dict[str, Any] = {"ran": True, "ms": s.run.step_ms(name),
                           "after_resume": "resume" in names and names.index("resume") < i}
    ev = next((e for e in s.step_events if e.get("name") == name and e.get("status") == "done"), None)
    pause = s.windows.get("pause")
    inside = not out["after_resume"]
    if ev is not None and pause and isinstance(ev.get("at"), int | float):
        start = float(ev["at"]) - s.clock_offset - float(ev.get("ms") or 0) / 1000
        out["starts_after_pause_end_ms"] = round((start - pause[1]) * 1000, 1)
        inside = inside or start < pause[1] - 0.001
    out["inside_pause"] = inside
    return out


class EventSwapper:
    """A ``run_scenario`` swapper that keeps every swap's windows (``self.done``)."""

    def __init__(self, config_path: Path | str) -> None:
        self.config_path = config_path
        self.done: list[Swapped] = []

    def __call__(self, source: str, target: str) -> SwapRun:
        s = swap_events(self.config_path, source, target)
        self.done.append(s)
        return s.run


def scenario_on_new_lab(lab_dir: Path, app_dir: Path, title: str, apps: list[Any], labs: list[Path],
                        lab_args: dict[str, Any], show: Any, common: dict[str, Any], *, swaps: int,
                        swapper: Callable[[Path], Any] | None = None) -> tuple[ScenarioResult, Any]:
    """A loopback lab (``lab_args`` for lab_up) with the demo app, ``swaps`` swaps of ours
    under ``common`` load (by ``swapper(config_path)`` if given), everything torn down after
    (also on failure).  Returns the result and the swapper made (or None)."""
    labs.append(lab_dir)
    t = time.monotonic()
    lab = lab_up(lab_dir, **lab_args)
    app = start_wsgi(lab.config_path, app_dir, workers=4, threads=8)
    apps.append(app)
    extra = ")" if "(" in title else ""
    print(f"{title}; lab up in {time.monotonic() - t:.1f} s{extra}:", flush=True)
    made = swapper(lab.config_path) if swapper else None
    try:
        return run_scenario(lab.config_path, app.url, swaps=swaps, pause=True, progress=show,
                            swapper=made, **common), made
    finally:
        apps.remove(app)
        app.stop()
        labs.remove(lab_dir)
        lab_down(lab_dir)


def replicas_section(tmp: Path, args: Any, show: Any, phase: Phase, common: dict[str, Any],
                     apps: list[Any], labs: list[Path]) -> dict[str, Any]:
    """--replica-swaps swaps of ours on a loopback lab of each of --replica-counts replicas."""
    rows = []
    for n in args.replica_counts:
        res, sw = scenario_on_new_lab(tmp / f"rlab-{n}", tmp / f"rapp-{n}", f"{n} replicas", apps, labs,
                                      {"replicas": n, "server": args.servers[0]}, show, common,
                                      swaps=args.replica_swaps, swapper=EventSwapper)
        p = phase(res, f"{n} replicas")
        ok = [s for s in sw.done if s.run.ok]
        orders = [step_order(s, "repoint") for s in ok]
        inside = sum(1 for o in orders if o.get("inside_pause"))
        p.update(replicas=n, siblings=n - 1,
                 total_ms=stats([s.run.total_ms for s in ok if s.run.total_ms is not None]),
                 repoint_ms=stats([o["ms"] for o in orders if o.get("ms") is not None]),
                 demote_ms=stats([v for s in ok if (v := s.run.step_ms("demote")) is not None]),
                 repoint_inside_pause=inside, repoint_order=orders,
                 repoint_gap_after_pause_ms=stats([o["starts_after_pause_end_ms"] for o in orders
                                                   if "starts_after_pause_end_ms" in o]))
        if inside:
            p["problems"].append(f"{n} replicas: the sibling repoint ran inside the pause window in "
                                 f"{inside} swap(s)")
        rows.append(p)
    return {"rows": rows}


def f(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:g}{unit}"



def replicas_table(sec: dict[str, Any]) -> str:
    lines = ["| replicas | swaps ok | swap total p50 / max | pause p50 / max | repoint p50 / max "
             "| repoint inside the pause | repoint starts after resume by (p50) | failed | lost |",
             "|" + "---|" * 9]
    for p in sec["rows"]:
        lines.append(f"| {p['replicas']} | {p['swaps_ok']}/{p['swaps']} "
                     f"| {f(p['total_ms']['p50'])} / {f(p['total_ms']['max'], ' ms')} "
                     f"| {f(p['pause_ms']['p50'])} / {f(p['pause_ms']['max'], ' ms')} "
                     f"| {f(p['repoint_ms']['p50'])} / {f(p['repoint_ms']['max'], ' ms')} "
                     f"| {'YES: ' + str(p['repoint_inside_pause']) if p['repoint_inside_pause'] else 'no'} "
                     f"| {f(p['repoint_gap_after_pause_ms']['p50'], ' ms')} | {p['failed']} | {p['lost']} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ flavors: endpoint and VIP
def vip_section(tmp: Path, server: str, swaps: int, args: Any, common: dict[str, Any], show: Any,
                phase: Phase, apps: list[Any], labs: list[Path], name: str = "ours, vip") -> dict[str, Any]:
    """``swaps`` swaps with the vip method on a hosts lab of ``server`` (root only)."""
    why_not = "--no-vip" if args.no_vip or swaps < 1 else hosts_unavailable()
    if why_not is not None:
        print(f"{name}: skipped ({why_not})", flush=True)
        return {"skipped": why_not}
    lab_dir = tmp / f"vlab-{server}"
    subnet = args.vip_subnet or pick_subnet(lab_dir, BENCH_SUBNETS)
    labs.append(lab_dir)
    t = time.monotonic()
    lab: Lab = lab_up(lab_dir, hosts=True, subnet=subnet, server=server)
    app = start_wsgi(lab.config_path, tmp / f"vapp-{server}", workers=4, threads=8)
    apps.append(app)
    print(f"{name}: hosts lab {subnet}, VIP {vip_address(lab)} (up in {time.monotonic() - t:.1f} s):",
          flush=True)
    try:
        res = run_scenario(lab.config_path, app.url, swaps=swaps, pause=True, progress=show, **common)
        out = phase(res, name)
        out["problems"] += vip_problems(lab, res.consistency.primary)
        out.update(subnet=subnet, vip=vip_address(lab))
    finally:
        apps.remove(app)
        app.stop()
        labs.remove(lab_dir)
        lab_down(lab_dir)
    return out


def flavor_row(p: dict[str, Any], server: str, label: str, vip: dict[str, Any]) -> dict[str, Any]:
    """The per-flavor comparison row: "ours" with the endpoint switch, and with the vip switch."""
    def cols(x: dict[str, Any]) -> dict[str, Any]:
        return {k: x[k] for k in ("swaps", "swaps_ok", "pause_ms", "write_block_ms", "failed", "acked_writes",
                                  "lost", "two_writable", "problems")}
    row: dict[str, Any] = {"server": server, "version": label}  # the endpoint columns flat, as before
    row.update(cols(p) if "pause_ms" in p else {"skipped": p.get("skipped", "not run"), "problems": []})
    row["vip"] = {**cols(vip), "vip_move_ms": vip["vip_move_ms"]} if "pause_ms" in vip else \
        {"skipped": vip.get("skipped", "not run"), "problems": []}
    return row


def flavor_section(tmp: Path, server: str, label: str, args: Any, common: dict[str, Any], show: Any,
                   phase: Phase, apps: list[Any], labs: list[Path]) -> dict[str, Any]:
    """--flavor-swaps swaps of "ours" on a loopback lab of ``server``, then on a hosts lab (VIP)."""
    res, _ = scenario_on_new_lab(tmp / f"lab-{server}", tmp / f"app-{server}", f"ours on {label} ({server}",
                              apps, labs, {"server": server}, show, common, swaps=args.flavor_swaps)
    vip = vip_section(tmp, server, args.flavor_swaps, args, common, show, phase, apps, labs,
                      name=f"ours, vip on {server}")
    return flavor_row(phase(res, f"ours on {server}"), server, label, vip)


def flavor_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| server | switch | swaps ok | pause window p50 / p95 / max | writes blocked p50 / max "
             "| VIP move p50 / max | failed requests | acknowledged writes | lost writes |",
             "|" + "---|" * 9]
    for r in rows:
        for how, c in (("endpoint", r), ("vip", r["vip"])):
            if "pause_ms" not in c:
                lines.append(f"| {r['version']} (`{r['server']}`) | {how} | skipped: {c.get('skipped')} "
                             "| | | | | | |")
                continue
            pm, wb, mv = c["pause_ms"], c["write_block_ms"], c.get("vip_move_ms") or {}
            lines.append(f"| {r['version']} (`{r['server']}`) | {how} | {c['swaps_ok']}/{c['swaps']} "
                         f"| {f(pm['p50'])} / {f(pm['p95'])} / {f(pm['max'])} ms "
                         f"| {f(wb['p50'])} / {f(wb['max'])} ms "
                         f"| {f(mv.get('p50'))} / {f(mv.get('max'), ' ms')} "
                         f"| {c['failed']} | {c['acked_writes']} | {c['lost']} |")
    return "\n".join(lines)
