"""Access patterns from a cold page cache: the first reads of a job on a store not yet in memory.

Before every round the store's files are evicted (``benchmarks.cache``) and
must be at most 1 % resident, else the benchmark is skipped with the reason;
then the store is opened (timed apart, ``open_ms``) and the round reads:
``cold_seq_scan`` the first ``COLD_SCAN_BATCHES`` batches of 256 in id order,
``cold_rand_item`` the first 2,000 ids of the seeded permutation one by one,
``cold_rand_batch`` its first 20 batches of 256. The same reads repeated on the
now warm cache give ``cold_vs_warm``, which shows the eviction worked.
``lmdb-no-readahead`` is LMDB opened with ``readahead=False``. Runs with
``--storage-cold``.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from benchmarks.cache import MAX_RESIDENT, evict, resident_fraction
from benchmarks.measure import label
from benchmarks.patterns import batches, shuffled
from storage import open_store

COLD_SCAN_BATCHES = 100
COLD_ITEMS = 2_000
COLD_BATCHES = 20
NO_READAHEAD = ("lmdb-no-readahead", "lmdb", {"readahead": False})

# Deselected unless --storage-cold is given (conftest.py).
pytestmark = [pytest.mark.timeout(1800), pytest.mark.storage_cold]


def _variants(metafunc):
    """Each backend as it is, and LMDB without readahead beside it."""
    names = metafunc.config.storage_settings.backends
    plain = [(name, name, {}) for name in names]
    return plain + ([NO_READAHEAD] if "lmdb" in names else [])


def pytest_generate_tests(metafunc):  # collected by pytest from this module
    if "cold_variant" in metafunc.fixturenames:
        variants = _variants(metafunc)
        metafunc.parametrize("cold_variant", variants, ids=[name for name, _, _ in variants])


def test_cold_seq_scan(benchmark, cold_variant, storage_n, dataset, built_stores):
    """read_many over the first batches of 256 in id order, from a fresh eviction."""
    scan = batches(np.arange(storage_n, dtype=np.int64))[:COLD_SCAN_BATCHES]
    _time_cold(benchmark, "cold_seq_scan", cold_variant, storage_n, dataset, built_stores,
               lambda store: [_timed(store.read_many, ids) for ids in scan])


def test_cold_rand_item(benchmark, cold_variant, storage_n, dataset, built_stores):
    """read_one over the first 2,000 ids of the seeded permutation, from a fresh eviction."""
    order = shuffled(storage_n)[:COLD_ITEMS].tolist()
    _time_cold(benchmark, "cold_rand_item", cold_variant, storage_n, dataset, built_stores,
               lambda store: [_timed(store.read_one, key) for key in order])


def test_cold_rand_batch(benchmark, cold_variant, storage_n, dataset, built_stores):
    """read_many over the first 20 batches of 256 of the seeded permutation, freshly evicted."""
    plan = batches(shuffled(storage_n))[:COLD_BATCHES]
    _time_cold(benchmark, "cold_rand_batch", cold_variant, storage_n, dataset, built_stores,
               lambda store: [_timed(store.read_many, ids) for ids in plan])


def _timed(read, argument) -> float:
    start = time.perf_counter()
    read(argument)
    return time.perf_counter() - start


def _time_cold(benchmark, operation, variant, count, dataset, built_stores, reads):
    name, backend, options = variant
    label(benchmark, operation, name, count, dataset)
    path = built_stores.get(backend, count)
    cold, opens, stores = [], [], []

    def fresh_eviction():
        for store in stores:
            store.close()  # LMDB's map would keep its pages in memory
        evict(path)
        fraction = resident_fraction(path)
        if fraction > MAX_RESIDENT:
            pytest.skip(f"eviction left {fraction:.1%} of the store at {path} in the page "
                        f"cache (at most {MAX_RESIDENT:.0%} allowed): this system keeps it")
        start = time.perf_counter()
        stores.append(open_store(path, backend, **options))
        opens.append(time.perf_counter() - start)
        return (stores[-1],), {}

    benchmark.pedantic(lambda store: cold.extend(reads(store)), setup=fresh_eviction,
                       rounds=3 if count <= 10_000 else 1)
    reads(stores[-1])  # the cache is warm now
    warm = reads(stores[-1])
    for store in stores:
        store.close()
    rounds = len(cold) // len(warm)
    benchmark.extra_info.update(
        reads=len(warm), open_ms=round(float(np.median(opens)) * 1e3, 3),
        cold_p50_us=round(float(np.percentile(cold, 50)) * 1e6, 2),
        cold_p99_us=round(float(np.percentile(cold, 99)) * 1e6, 2),
        warm_p50_us=round(float(np.percentile(warm, 50)) * 1e6, 2),
        cold_vs_warm=round(sum(cold) / rounds / sum(warm), 2),
        cold_p50_vs_warm_p50=round(float(np.percentile(cold, 50) / np.percentile(warm, 50)), 2),
    )
