"""Every test here is marked ``powerloss`` and skipped, with the reason, without FUSE;
a run ends with the table of crash states tried, survived and documented per format."""
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


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    write = terminalreporter.write_line
    terminalreporter.section("power cuts: crash states tried / survived / of which documented")
    for (test, backend), (tried, survived, documented) in sorted(TALLY.items()):
        write(f"{test:<28}{backend:<8}{tried:>6} tried {survived:>6} survived "
              f"{documented:>6} documented")
