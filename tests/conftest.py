"""Fixtures shared by the tests: every property runs over the registry of our backends."""
from __future__ import annotations

import itertools
from collections import defaultdict

import pytest
from hypothesis import settings

from storage.registry import our_backends
from tests.memory_backend import register
from tests.reliability.faults import TALLY

register()  # the toy format runs through every shared test

# The test command runs a share of each property's examples (tests.strategies.examples);
# `pytest --hypothesis-profile=thorough` runs them all, drawn afresh on each run; the
# quick profile draws the same ones every run, so that a failure seen once is seen again.
settings.register_profile("quick", max_examples=35, derandomize=True)
settings.register_profile("thorough", max_examples=100)
settings.load_profile("quick")

_store_numbers = itertools.count()


@pytest.fixture(params=our_backends())
def backend_name(request) -> str:
    """Each recommended backend in the registry (the classic references excluded)."""
    return request.param


@pytest.fixture
def new_store_path(tmp_path_factory):
    """Call for a fresh, not yet existing store path; safe inside hypothesis examples."""
    def make():
        return tmp_path_factory.mktemp("store") / f"store-{next(_store_numbers)}"
    return make


# The fault x backend table of tests/reliability, counted here rather than in its own
# conftest because with pytest -n only this one is loaded in the main process.
# (test, backend) -> [crash states tried, survived, survived through a documented error]
POWER_CUTS: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])


def pytest_runtest_logreport(report):
    for name, entries in report.user_properties:
        if name == "faults":
            for fault, backend, survived in entries:
                TALLY[fault, backend][0] += 1
                TALLY[fault, backend][1] += bool(survived)
        elif name == "power cuts":
            for test, backend, *counts in entries:
                for i, count in enumerate(counts):
                    POWER_CUTS[test, backend][i] += count


def pytest_terminal_summary(terminalreporter):
    if POWER_CUTS:
        write = terminalreporter.write_line
        terminalreporter.section("power cuts: crash states tried / survived / of which documented")
        for (test, backend), (tried, survived, documented) in sorted(POWER_CUTS.items()):
            write(f"{test:<28}{backend:<8}{tried:>6} tried {survived:>6} survived "
                  f"{documented:>6} documented")
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
