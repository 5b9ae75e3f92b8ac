"""Every test here is marked ``powerloss`` and skipped, with the reason, without FUSE;
each report carries the crash states it tried (tests/conftest.py prints the table)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.powerloss.harness import TALLY
from tests.powerloss.mount import fuse_unavailable

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    reason = fuse_unavailable()
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.powerloss)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"power-loss tests need FUSE: {reason}"))


_reported: dict[tuple[str, str], list[int]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """The crash states this test added to the tally travel in its report, so that the
    table is whole when tests run in worker processes (pytest -n)."""
    outcome = yield
    if call.when != "call":
        return
    added = []
    for key, counts in TALLY.items():
        before = _reported.get(key, [0, 0, 0])
        if counts != before:
            added.append([*key, *(now - then for now, then in zip(counts, before))])
            _reported[key] = list(counts)
    if added:
        outcome.get_result().user_properties.append(("power cuts", added))
