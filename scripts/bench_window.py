"""The bench's tables, pure functions over the JSON of scripts/bench_swap.py: the main
comparison (ours, no pause, original 2012, ours vip, ours haproxy) and the pause window
step by step: what each step inside it costs, and what is left between the steps
(journal writes, events), from the per-swap step timings the swap phases keep."""

from __future__ import annotations

from typing import Any

# the steps that can run inside the pause window, in plan order (switch steps included)
IN_WINDOW = ("pause", "hook:before_fence", "fence", "vip-remove", "haproxy-maint", "hook:after_fence",
             "catch-up", "promote", "publish", "vip-add", "haproxy-ready", "hook:after_promote",
             "fence-check", "resume")


def _p50(values: list[float]) -> float | None:
    """Nearest rank, as bench_swap.pct(v, 0.5): with an even count, the upper of the two
    middle values (the lower, used before, printed 10.8 here and 12.7 in the main table
    for the same 20 swaps' pause window)."""
    v = sorted(values)
    return round(v[min(len(v) - 1, round(0.5 * (len(v) - 1)))], 2) if v else None


def window_profile(phase: dict[str, Any]) -> dict[str, Any]:
    """{"steps": [(name, p50 ms)], "between_ms": p50, "pause_ms": p50} over the phase's
    successful swaps.  "between" = the pause window minus its steps: the runner's own
    time (one journal write per step boundary, events)."""
    swaps = [s for s in phase.get("per_swap", []) if s.get("ok") and s.get("pause_ms") is not None]
    if not swaps:
        return {"steps": [], "between_ms": None, "pause_ms": None, "swaps": 0}
    names = [n for n in IN_WINDOW if any(st["name"] == n for s in swaps for st in s["steps"])]
    steps = []
    for n in names:
        steps.append((n, _p50([float(st["ms"]) for s in swaps for st in s["steps"]
                               if st["name"] == n and st.get("ms") is not None])))
    between = [float(s["pause_ms"]) - sum(float(st["ms"]) for st in s["steps"]
                                          if st["name"] in names and st.get("ms") is not None)
               for s in swaps]
    running = [float(s["running_at_pause"]) for s in swaps if s.get("running_at_pause") is not None]
    return {"steps": steps, "between_ms": _p50(between),
            "pause_ms": _p50([float(s["pause_ms"]) for s in swaps]), "swaps": len(swaps),
            "running_at_pause": _p50(running)}


def window_table(profiles: dict[str, dict[str, Any]]) -> str:
    """One column per phase ("ours", "ours, vip"), one row per step, p50 ms."""
    cols = [(k, p) for k, p in profiles.items() if p.get("swaps")]
    if not cols:
        return "  (no successful swaps)"
    names: list[str] = []
    for _, p in cols:
        names += [n for n, _ in p["steps"] if n not in names]
    names.sort(key=IN_WINDOW.index)
    width = max(len(k) for k, _ in cols) + 2
    out = [f"  {'step (p50 ms)':<22}" + "".join(f"{k:>{width}}" for k, _ in cols)]

    def cell(v: float | None) -> str:
        return f"{'-' if v is None else f'{v:.2f}':>{width}}"

    for n in names:
        out.append(f"  {n:<22}" + "".join(cell(dict(p["steps"]).get(n)) for _, p in cols))
    out.append(f"  {'between steps':<22}" + "".join(cell(p["between_ms"]) for _, p in cols))
    out.append(f"  {'pause window':<22}" + "".join(cell(p["pause_ms"]) for _, p in cols))
    if any(p.get("running_at_pause") is not None for _, p in cols):
        # what the pause step waited for: the app's own requests, already running
        def count(v: float | None) -> str:
            return f"{'-' if v is None else f'{v:g}':>{width}}"

        out.append(f"  {'running at the pause':<22}"
                   + "".join(count(p.get("running_at_pause")) for _, p in cols))
    return "\n".join(out)


def main_table(results: dict[str, Any]) -> str:
    """ours / ours, host agent / no pause / original 2012 / ours, vip / ours, haproxy side by side,
    and footnotes."""
    phases = [results[k] for k in ("ours", "ours_host", "no_pause", "original", "vip", "haproxy")
              if isinstance(results.get(k), dict) and "pause_ms" in results[k]]

    def f(v: Any, unit: str = "") -> str:
        return "-" if v is None else f"{v:g}{unit}"

    def move(p: dict[str, Any], key: str) -> str:
        m = p.get(key) or {}
        return "-" if m.get("p50") is None else f"{f(m['p50'])} / {f(m['p95'])} / {f(m['max'], ' ms')}"

    moves = [(f"{what} move p50 / p95 / max", [move(p, key) for p in phases])
             for what, key in (("VIP", "vip_move_ms"), ("HAProxy", "haproxy_move_ms"))
             if any((p.get(key) or {}).get("p50") is not None for p in phases)]
    rows = [
        ("swaps (ok/run)", [f"{p['swaps_ok']}/{p['swaps']}" for p in phases]),
        ("pause window p50", [f(p["pause_ms"]["p50"], " ms") for p in phases]),
        ("pause window p95", [f(p["pause_ms"]["p95"], " ms") for p in phases]),
        ("pause window max", [f(p["pause_ms"]["max"], " ms") for p in phases]),
        ("writes blocked p50", [f(p["write_block_ms"]["p50"], " ms") for p in phases]),
        *moves,
        ("held requests", [str(p["held_requests"]) for p in phases]),
        ("held: added latency p99", [f(p["held_added_ms"]["p99"], " ms") for p in phases]),
        ("requests sent", [str(p["requests"]) for p in phases]),
        ("request rate reached", [f(p["rate"], " req/s") for p in phases]),
        ("failed requests", [str(p["failed"]) for p in phases]),
        ("acknowledged writes", [str(p["acked_writes"]) for p in phases]),
        ("lost writes", [str(p["lost"]) for p in phases]),
        ("two writable servers", [str(p["two_writable"]) for p in phases]),
        ("request p99 / max", [f"{f(p['latency_ms']['p99'])} / {f(p['latency_ms']['max'], ' ms')}"
                               for p in phases]),
    ]
    head = ["", *[p["name"] for p in phases]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] if phases else []
    lines += ["| " + " | ".join([name, *vals]) + " |" for name, vals in rows if phases]
    ratios = results.get("ratios")
    lines.append("")
    if ratios:
        lines.append(f"original / ours pause window (p50): {f(ratios.get('pause_original_over_ours'))}x "
                     f"(goal >= 10x)")
        lines.append(f"failed requests: ours {ratios.get('failed_ours')} vs no pause "
                     f"{ratios.get('failed_no_pause')}")
    vip = results.get("vip") or {}
    if "pause_ms" in vip:
        lines.append(f"ours, vip: hosts lab {vip['subnet']} (each server in its own network namespace "
                     f"with sshd), VIP {vip['vip']} moved over SSH; the app connects to the VIP")
    elif vip.get("skipped"):
        lines.append(f"ours, vip: skipped ({vip['skipped']})")
    lines += [x for x in [_haproxy_line(results)] if x]
    return "\n".join(lines)


def _haproxy_line(results: dict[str, Any]) -> str | None:
    """The main table's footnote for the "ours, haproxy" column (None if not run)."""
    h = results.get("haproxy") or {}
    if "pause_ms" in h:
        return (f"ours, haproxy: loopback lab behind {h['haproxy']} (frontend {h['frontend']}, backend "
                f"{h['backend']}); the app connects to the frontend, roleswap moves the backend's "
                "ready entry over the runtime API")
    if h.get("skipped"):
        return f"ours, haproxy: skipped ({h['skipped']})"
    return None
