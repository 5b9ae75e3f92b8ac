"""Stores opened in a parent and read in forked and spawned children.

The supported pattern (README, "Reliability"): open the store in the parent,
hand it to DataLoader workers; a forked child gets a read-only copy that opens
its own handles on first use, a pickled store arrives read-only, and either may
simply open the store from its path. A format that allows one process per store
(``capabilities.processes == "one"``, LevelDB) must refuse every child with
StoreBusyError instead, and the parent's store must be unharmed. The checks run in a child program
(``forker``) so that this test process never forks.
"""
from __future__ import annotations

import json

import pytest

from storage.registry import backend_class
from tests.reliability.faults import tallied
from tests.reliability.scenario import assert_accepts_writes, assert_holds, fill, run_child


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["r", "a"], ids=["parent-reads", "parent-writes"])
def test_children_of_a_process_holding_the_store(backend_name, new_store_path, mode):
    path = new_store_path()
    fill(path, backend_name, range(50))
    result = run_child("forker", path, backend_name, mode, timeout=100)
    with tallied(f"fork/spawn children, parent mode {mode!r}", backend_name):
        assert result.returncode == (0 if mode == "r" else -9), result.stderr  # see forker
        summary = json.loads(result.stdout.splitlines()[-1])
        if backend_class(backend_name).capabilities.processes == "one":
            # LevelDB: a child cannot open what the parent holds, and says so by type.
            assert summary["problems"], "a child read a store held by its parent"
            assert all(problem.startswith("StoreBusyError") and "one process" in problem
                       for problem in summary["problems"]), summary["problems"]
        else:
            assert summary["problems"] == []
        assert summary["forked_write"] == "ReadOnlyError"  # a clear error, not a second writer
        assert "Traceback" not in result.stderr, result.stderr  # nothing went wrong at exit
        written = 1100 if mode == "a" else 50
        assert_holds(path, dict.fromkeys(range(written), 0))
        assert_accepts_writes(path, backend_name)
