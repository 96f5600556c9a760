"""Fixtures of the real-fault suite: the seed, the lab keeper, the measured swap timeline,
the evidence directory, and the fault matrix printed at the end of the session."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningLab
from tests.faults.harness import CaseRecord, LabKeeper, Timeline, calibrate, seed_from_env

SEED = seed_from_env()
RECORDS: list[CaseRecord] = []
_STATE: dict[str, Any] = {}


def _say(config: pytest.Config, line: str) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(line)


def pytest_report_header(config: pytest.Config) -> str:
    return f"roleswap faults: ROLESWAP_FAULT_SEED={SEED} (set it to replay these offsets)"


@pytest.fixture(scope="session")
def fault_seed(request: pytest.FixtureRequest) -> int:
    """The run's seed, printed once at the start (also when this conftest loads late)."""
    _say(request.config, f"\nroleswap faults: ROLESWAP_FAULT_SEED={SEED}")
    return SEED


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-case evidence (swap/recover output, case.json); ROLESWAP_FAULT_REPORT_DIR to keep it."""
    env = os.environ.get("ROLESWAP_FAULT_REPORT_DIR")
    path = Path(env) / f"seed-{SEED}" if env else tmp_path_factory.mktemp("faults-report")
    path.mkdir(parents=True, exist_ok=True)
    _STATE["report_dir"] = path
    return path


@pytest.fixture(scope="session")
def keeper(tmp_path_factory: pytest.TempPathFactory, fault_seed: int,
           server_flavor: str) -> Iterator[LabKeeper]:
    """The suite's own lab (db1 primary, db2 + db3 replicas, Redis), rebuilt when needed."""
    k = LabKeeper(tmp_path_factory.mktemp("faultlab") / "lab", server_flavor)
    _STATE["keeper"] = k
    yield k
    k.close()


@pytest.fixture(scope="session")
def timeline(keeper: LabKeeper, request: pytest.FixtureRequest) -> Timeline:
    """Clean swaps measured on this box (they must all succeed: the control of the suite)."""
    keeper.ensure_known_state()
    tl = calibrate(keeper.lab)
    keeper.ensure_known_state()
    _say(request.config, f"roleswap faults: clean swap timeline: {tl.summary()}")
    _STATE["timeline"] = tl.summary()
    return tl


@pytest.fixture
def flab(keeper: LabKeeper) -> RunningLab:
    """The lab in its known state: db1 primary, all healthy, nothing pending."""
    _STATE["last_restore"] = keeper.ensure_known_state()
    return keeper.lab


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDS:
        return
    tr = terminalreporter
    tr.section(f"roleswap fault matrix  ROLESWAP_FAULT_SEED={SEED}")
    if "timeline" in _STATE:
        tr.write_line(f"timeline: {_STATE['timeline']}")
    tr.write_line("offset: s+ after the process start, b+ after the journal's begin record; "
                  "recover: exit code:decision of each run")
    tr.write_line(f"{'kind':<14} {'#':>1} {'offset':>8}  {'landed':<44} {'swap':>4}  "
                  f"{'recover':<28} outcome")
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in RECORDS:
        outcome = "passed" if not r.failed else "FAILED " + ",".join(r.failed)
        table[r.kind][outcome] += 1
        recov = ", ".join(r.recover_brief)
        tr.write_line(f"{r.kind:<14} {r.case:>1} {r.anchor[0]}+{r.offset:.3f}s  {r.landed[:44]:<44} "
                      f"{r.swap.get('rc')!s:>4}  {recov[:28]:<28} {outcome}")
    tr.write_line("")
    for kind, outcomes in table.items():
        tr.write_line(f"{kind:<14} " + "; ".join(f"{n}x {o}" for o, n in sorted(outcomes.items())))
    keeper = _STATE.get("keeper")
    if keeper is not None and keeper.rebuilds:
        tr.write_line(f"lab rebuilt {len(keeper.rebuilds)} time(s)")
    if "report_dir" in _STATE:
        tr.write_line(f"evidence per case: {_STATE['report_dir']}")
