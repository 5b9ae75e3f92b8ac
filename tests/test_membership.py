"""Membership and the next automatic id come from each format's own lookup (the
``_contains_many`` and ``_max_id`` hooks), not from listing every id: with ``_ids``
made to fail, ``key in store`` and appending still work on every format we ship, in
each of its layouts. (The toy of tests/memory_backend.py relies on the defaults,
which list ids; the references keep the classic code's ways.)"""
from __future__ import annotations

import numpy as np
import pytest

from storage import open_store
from storage.core.encodings import SIGNATURES
from storage.registry import backend_class, our_backends
from tests.memory_backend import MemoryBackend

LAYOUTS = [pytest.param(name, encoding, id=f"{name}-{encoding or 'arrays'}")
           for name in our_backends() if name != MemoryBackend.name
           for encoding in (None, *backend_class(name).capabilities.encodings[:1])]


def _no_listing():
    raise AssertionError("listed every id to answer one question")


@pytest.mark.parametrize("backend, encoding", LAYOUTS)
def test_membership_and_next_id_do_not_list_every_id(backend, encoding, tmp_path):
    if encoding is None:
        images = np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3)
    else:
        images = [SIGNATURES[encoding] + bytes([n]) * n for n in range(6)]
    with open_store(tmp_path / "store", backend, mode="w", encoding=encoding) as store:
        store.write_many(images[:3], np.arange(3), np.array([2, 5, 9]))
    with open_store(tmp_path / "store", mode="a") as store:
        store._ids = _no_listing
        assert 5 in store and 9 in store
        assert 3 not in store and 10 not in store
        assert store.write_many(images[3:], np.arange(3)).tolist() == [10, 11, 12]
    with open_store(tmp_path / "store") as store:
        assert store.ids().tolist() == [2, 5, 9, 10, 11, 12]
