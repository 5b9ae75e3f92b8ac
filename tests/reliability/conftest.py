"""Every test here is marked ``reliability``; each report carries the faults it injected."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.faults import PENDING

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call" and PENDING:
        # The report travels to the main process, where pytest_runtest_logreport counts it.
        outcome.get_result().user_properties.append(("faults", [*PENDING]))
        PENDING.clear()
