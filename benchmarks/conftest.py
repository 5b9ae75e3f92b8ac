"""Fixtures of the benchmarks: stores to read, built once and kept off the clock."""
from __future__ import annotations

import pytest

from benchmarks.measure import StoreCache


@pytest.fixture(scope="session")
def store_cache(tmp_path_factory, datasets, encoded_datasets, pytestconfig):
    kept = pytestconfig.storage_settings.store_cache
    if kept:
        kept.mkdir(parents=True, exist_ok=True)
    cache = StoreCache(kept or tmp_path_factory.mktemp("stores"), datasets, keep=bool(kept),
                       encoded=encoded_datasets, shards=pytestconfig.storage_settings.shards)
    yield cache
    cache.remove_all()


@pytest.fixture
def built_stores(store_cache, storage_side):
    """Stores of this test's image side: ``get(backend, N)`` and ``take(backend, N)``."""
    return _SideStores(store_cache, storage_side)


class _SideStores:
    def __init__(self, cache: StoreCache, side: int):
        self.cache, self.side = cache, side

    def get(self, backend: str, count: int, encoding: str | None = None):
        return self.cache.get(backend, count, self.side, encoding)

    def take(self, backend: str, count: int):
        return self.cache.take(backend, count, self.side)
