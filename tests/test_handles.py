"""Process-local handles: a forked child drops the parent's and opens its own."""
from __future__ import annotations

import multiprocessing

import pytest

from storage.core.handles import ProcessLocal, SharedHandles

pytestmark = pytest.mark.timeout(60)
_made, _forgotten, _closed = [], [], []
_local = ProcessLocal(lambda: _made.append(object()) or _made[-1])
_table = SharedHandles(forget=_forgotten.append)


def _in_child(queue) -> None:
    queue.put({"local_is_new": _local.get() is not _made[0] and len(_made) == 2,
               "forgotten": [handle == "parent-handle" for handle in _forgotten],
               "reopened": _table.acquire("store", lambda: "child-handle")})


def test_a_forked_child_makes_its_own_and_forgets_the_parents():
    parent_value = _local.get()
    assert _local.get() is parent_value  # made once per process
    assert _table.acquire("store", lambda: "parent-handle") == "parent-handle"
    assert _table.acquire("store", lambda: "never opened") == "parent-handle"  # shared
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    answer = queue.get(timeout=30)
    child.join(30)
    assert answer == {"local_is_new": True, "forgotten": [True], "reopened": "child-handle"}
    assert _forgotten == [] and _local.get() is parent_value  # the parent kept its own
    _table.release("store", _closed.append)
    assert _closed == []  # one user left
    _table.release("store", _closed.append)
    assert _closed == ["parent-handle"]
