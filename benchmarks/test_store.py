"""Writing: a whole data set into a new store, and one image into a store of N.

Stores are opened with ``durable=False``: these benchmarks compare what each format
costs, not how long the disk takes to flush (the classic code never fsyncs PNG or
HDF5 files). ``durable=True``, the library's default, adds one fsync per write_many
and at close; its cost is the disk's, reported in the README.
"""
from __future__ import annotations

import itertools
import shutil

from benchmarks.measure import SINGLE_ROUNDS, label, record_throughput, rounds_for
from storage import open_store
from storage.core.files import disk_usage


def test_store_many(benchmark, storage_backend, storage_n, dataset, tmp_path):
    """Create a store holding N images: open, write_many, close (fresh store each round)."""
    label(benchmark, "store_many", storage_backend, storage_n, dataset)
    benchmark.extra_info["durable"] = False
    images, labels = dataset.take(storage_n)
    path = tmp_path / "store"

    def fresh_path():
        shutil.rmtree(path, ignore_errors=True)  # the previous round's store, off the clock
        return (path,), {}

    def store_many(path):
        with open_store(path, storage_backend, mode="w", durable=False) as store:
            store.write_many(images, labels)

    benchmark.pedantic(store_many, setup=fresh_path, rounds=rounds_for(storage_n))
    record_throughput(benchmark, storage_n, images[0].nbytes, disk_usage(path), images.nbytes)
    shutil.rmtree(path)


def test_store_single(benchmark, storage_backend, storage_n, dataset, built_stores):
    """Write one more image into an open store that holds N images (a new id each round)."""
    label(benchmark, "store_single", storage_backend, storage_n, dataset)
    benchmark.extra_info["durable"] = False
    images, labels = dataset.take(storage_n)
    path = built_stores.take(storage_backend, storage_n)
    next_id = itertools.count(storage_n)
    image, image_label = images[0], int(labels[0])

    with open_store(path, storage_backend, mode="a", durable=False) as store:
        benchmark.pedantic(store.write_one,
                           setup=lambda: ((next(next_id), image, image_label), {}),
                           rounds=SINGLE_ROUNDS)
    record_throughput(benchmark, 1, image.nbytes, disk_usage(path), images.nbytes)
