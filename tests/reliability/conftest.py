"""Every test here is marked ``reliability``; a run ends with the fault x backend table."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.faults import TALLY

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    backends = sorted({backend for _, backend in TALLY})
    faults = list(dict.fromkeys(fault for fault, _ in TALLY))
    write = terminalreporter.write_line
    terminalreporter.section("faults injected: the store survived / faults tried")
    write(f"{'fault':<40}" + "".join(f"{backend:>10}" for backend in backends))
    for fault in faults:
        cells = []
        for backend in backends:
            tried, survived = TALLY.get((fault, backend), (0, 0))
            cells.append(f"{survived}/{tried}" if tried else "-")
        write(f"{fault:<40}" + "".join(f"{cell:>10}" for cell in cells))
