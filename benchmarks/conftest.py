"""Fixtures of the benchmarks: stores to read, built once and kept off the clock."""
from __future__ import annotations

import pytest

from benchmarks.measure import StoreCache


@pytest.fixture(scope="session")
def built_stores(tmp_path_factory, dataset):
    cache = StoreCache(tmp_path_factory.mktemp("stores"), dataset)
    yield cache
    cache.remove_all()
