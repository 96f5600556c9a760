"""Fixtures shared by the swap suites: a lab of the module's own with the writes table."""

from __future__ import annotations

import pytest

from tests.conftest import RunningLab
from tests.integration.swaphelp import create_writes_table


@pytest.fixture(scope="module")
def writes_lab(module_lab: RunningLab) -> RunningLab:
    """A fresh lab per module (destructive tests) with ``app.writes`` created on db1."""
    create_writes_table(module_lab)
    return module_lab
