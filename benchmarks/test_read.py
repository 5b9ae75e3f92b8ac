"""Reading: a whole store into one array, and one image at a time from a store of N."""
from __future__ import annotations

import itertools
import tracemalloc

import numpy as np

from benchmarks.measure import SINGLE_ROUNDS, label, record_throughput, rounds_for
from storage import open_store
from storage.core.files import disk_usage


def test_read_many(benchmark, storage_backend, storage_n, dataset, built_stores):
    """Open a store of N images and read them all into (N, H, W, C) images and labels."""
    label(benchmark, "read_many", storage_backend, storage_n, dataset)
    path = built_stores.get(storage_backend, storage_n)

    def read_many():
        with open_store(path, storage_backend) as store:
            return store.read_many(range(storage_n))

    images, labels = benchmark.pedantic(read_many, rounds=rounds_for(storage_n))
    expected_images, expected_labels = dataset.take(storage_n)
    assert np.array_equal(images, expected_images) and np.array_equal(labels, expected_labels)
    record_throughput(benchmark, storage_n, images[0].nbytes, disk_usage(path), images.nbytes)
    del images, labels
    benchmark.extra_info["peak_memory_vs_result"] = _peak_memory_ratio(read_many)


def test_read_single(benchmark, storage_backend, storage_n, dataset, built_stores):
    """Read one image and its label from an open store of N: what a training loop does."""
    label(benchmark, "read_single", storage_backend, storage_n, dataset)
    path = built_stores.get(storage_backend, storage_n)
    ids = _spread_ids(storage_n)

    with open_store(path, storage_backend) as store:
        image, _ = benchmark.pedantic(store.read_one, setup=lambda: ((next(ids),), {}),
                                      rounds=SINGLE_ROUNDS)
    record_throughput(benchmark, 1, image.nbytes, disk_usage(path),
                      dataset.images[0].nbytes * storage_n)


def test_open_read_single(benchmark, storage_backend, storage_n, dataset, built_stores):
    """Open a store of N, read one image and its label, close: what the classic code does."""
    label(benchmark, "open_read_single", storage_backend, storage_n, dataset)
    path = built_stores.get(storage_backend, storage_n)
    ids = _spread_ids(storage_n)

    def open_and_read(key):
        with open_store(path, storage_backend) as store:
            return store.read_one(key)

    image, _ = benchmark.pedantic(open_and_read, setup=lambda: ((next(ids),), {}),
                                  rounds=rounds_for(storage_n) * 5)
    record_throughput(benchmark, 1, image.nbytes, disk_usage(path),
                      dataset.images[0].nbytes * storage_n)


def test_read_many_random(benchmark, storage_backend, storage_n, dataset, built_stores):
    """read_many of 1,000 ids drawn at random from an open store of N: one shuffled batch."""
    label(benchmark, "read_many_random", storage_backend, storage_n, dataset)
    path = built_stores.get(storage_backend, storage_n)
    count = min(1_000, storage_n)
    rng = np.random.default_rng(storage_n)

    with open_store(path, storage_backend) as store:
        images, labels = benchmark.pedantic(
            store.read_many, setup=lambda: ((rng.choice(storage_n, count, replace=False),), {}),
            rounds=rounds_for(storage_n) * 5)
    record_throughput(benchmark, count, images[0].nbytes, disk_usage(path),
                      dataset.images[0].nbytes * storage_n)


def _spread_ids(count: int):
    """Ids spread over the whole store, so reads do not all hit one cached block."""
    rng = np.random.default_rng(count)
    return itertools.cycle(rng.permutation(count).tolist())


def _peak_memory_ratio(read_many) -> float:
    """Peak Python/numpy memory of one untimed read_many, over the bytes it returns."""
    tracemalloc.start()
    try:
        images, labels = read_many()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return round(peak / (images.nbytes + labels.nbytes), 3)
