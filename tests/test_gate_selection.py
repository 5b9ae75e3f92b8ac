"""The gate measures our formats on each side, and references only where their code changed."""
from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.gate.selection import Registered, backends_for, registered
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
    entries = registered(sys.executable, REPO)
    assert [entry.name for entry in entries] == list(BACKENDS)
    for entry in entries:
        assert entry.reference == BACKENDS[entry.name].reference
        assert (REPO / entry.module_path).is_file(), entry
