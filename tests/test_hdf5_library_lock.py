"""HDF5 is called only under h5py's library lock, even where h5py does not wrap the call.

The pip build of HDF5 is not thread-safe: one call beside another thread's read broke its
tables (errors such as "property doesn't exist", then a segmentation fault).
"""
from __future__ import annotations

import numpy as np
import pytest
from h5py._objects import phil

from storage import open_store
from storage.formats import hdf5

pytestmark = pytest.mark.timeout(60)


def test_the_read_attempts_setting_is_made_under_h5pys_lock(tmp_path, monkeypatch):
    held = []
    monkeypatch.setattr(hdf5, "_read_attempts_setter",
                        lambda: lambda access, attempts: held.append(phil._is_owned()))
    with open_store(tmp_path / "store", "hdf5", mode="w") as store:
        store.write_many(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]))
    with open_store(tmp_path / "store") as store:
        assert store.read_one(1)[1] == 1
    assert held and all(held), held
