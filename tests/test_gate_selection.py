"""What the gate measures on each side, and the stores it builds once per side and job."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from benchmarks.datasets import Dataset
from benchmarks.gate.selection import Registered, backends_for, registered
from benchmarks.measure import StoreCache
from storage import open_store
from storage.registry import BACKENDS

REPO = Path(__file__).resolve().parents[1]

ENTRIES = [Registered("lmdb", False, "storage/formats/lmdb/__init__.py"),
           Registered("zarr", False, "storage/formats/zarr.py"),
           Registered("raw", True, "storage/references/raw.py"),
           Registered("classic-png", True, "storage/references/classic_png.py")]


def test_ours_always_references_only_when_their_module_changed():
    assert backends_for(ENTRIES, set(), None) == ("lmdb", "zarr")
    changed = {"storage/references/raw.py", "README.md"}
    assert backends_for(ENTRIES, changed, None) == ("lmdb", "zarr", "raw")


def test_asked_for_backends_are_measured_where_the_revision_has_them():
    # A format the head adds is measured on the head alone, and reported as new.
    assert backends_for(ENTRIES, set(), ("zarr", "sqlite", "raw")) == ("zarr", "raw")
    assert backends_for(ENTRIES, set(), ("sqlite",)) == ()


def test_a_revision_is_asked_for_its_own_registry():
    # The revision's own registry, as shipped: not the toy this test session adds.
    entries = registered(sys.executable, REPO)
    assert [entry.name for entry in entries] == [name for name in BACKENDS if name != "memory"]
    for entry in entries:
        assert entry.reference == BACKENDS[entry.name].reference
        assert (REPO / entry.module_path).is_file(), entry


def test_kept_stores_are_built_once_and_writers_get_copies(tmp_path):
    def datasets(side, name="one"):
        images = np.arange(5 * side * side * 3, dtype=np.uint8).reshape(5, side, side, 3)
        return Dataset(name, images, np.arange(5))

    first = StoreCache(tmp_path, datasets, keep=True)
    path = first.get("lmdb", 5, 8)
    taken = first.take("lmdb", 5, 8)
    assert taken != path
    with open_store(taken, mode="a") as store:
        store.write_one(99, np.zeros((8, 8, 3), np.uint8), 0)
    first.remove_all()
    assert not taken.exists() and path.exists()
    later = StoreCache(tmp_path, datasets, keep=True)
    assert later.get("lmdb", 5, 8) == path
    with open_store(path) as store:  # the writer's image went to its copy only
        assert len(store) == 5
    other = StoreCache(tmp_path, lambda side: datasets(side, "two"), keep=True)
    other.get("lmdb", 5, 8)  # another data set: rebuilt, not reused
    assert (tmp_path / f"{path.name}.complete").read_text() == "two"
