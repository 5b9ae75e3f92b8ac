"""The cold-cache tools of the benchmarks, and LMDB's readahead option they compare."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from benchmarks.cache import MAX_RESIDENT, evict, resident_bytes, resident_fraction, store_files
from storage import open_store
from storage.errors import InvalidOptionError


@pytest.fixture
def written_store(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (300, 32, 32, 3), np.uint8)
    path = tmp_path / "store"
    with open_store(path, "lmdb", mode="w") as store:  # durable: flushed to the disk
        store.write_many(images, np.arange(300))
    return path, images


@pytest.mark.timeout(60)
def test_evict_drops_the_page_cache_and_a_read_brings_it_back(written_store):
    path, images = written_store
    assert {file.name for file in store_files(path)} == {"store.json", "data.mdb", "lock.mdb"}
    evict(path)
    fraction = resident_fraction(path)
    if fraction > MAX_RESIDENT:
        pytest.skip(f"this file system kept {fraction:.0%} of the files in memory after "
                    "POSIX_FADV_DONTNEED (tmpfs does)")
    with open_store(path) as store:
        np.testing.assert_array_equal(store.read_many(range(300))[0], images)
    resident, total = resident_bytes(path)
    assert resident >= images.nbytes and total >= resident


def test_lmdb_readahead_is_an_option_that_pickles(written_store):
    path, _ = written_store
    with open_store(path) as store:
        assert store.options.readahead is True and store._env.flags()["readahead"] is True
    with open_store(path, "lmdb", readahead=False) as store:
        assert store._env.flags()["readahead"] is False
        state = pickle.dumps(store)
    copy = pickle.loads(state)  # opens its own environment: the original is closed
    try:
        assert copy.options.readahead is False and copy._env.flags()["readahead"] is False
    finally:
        copy.close()


def test_lmdb_readahead_takes_a_bool_only(written_store):
    path, _ = written_store
    with pytest.raises(InvalidOptionError, match="readahead.*True or False"):
        open_store(path, "lmdb", readahead="off")
