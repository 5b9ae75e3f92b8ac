"""Access patterns of a training loop, warm page cache: a scan, shuffled images and batches.

Each round is one read: one batch of 256 (``seq_scan``, ``rand_batch``) or one image
(``rand_item``); the median is the time per batch or per image. Rounds fill a small
time budget (``benchmarks.patterns``), so slow references at large N stay affordable.
With ``--storage-sharded K`` each format also reads as ``sharded-<format>``: the same
images in K shards of it, opened as one store.
"""
from __future__ import annotations

import numpy as np

from benchmarks.measure import label, record_throughput
from benchmarks.patterns import (BATCH, MAX_BATCH_ROUNDS, MAX_ITEM_ROUNDS, Cycle, batches,
                                 latency_percentiles, rounds_within_budget, shuffled)
from storage import open_store
from storage.core.files import disk_usage


def test_seq_scan(benchmark, access_backend, storage_n, dataset, built_stores):
    """read_many over batches of 256 ids in id order, from an open store of N."""
    _time_batches(benchmark, "seq_scan", access_backend, storage_n, dataset, built_stores,
                  batches(np.arange(storage_n, dtype=np.int64)))


def test_rand_batch(benchmark, access_backend, storage_n, dataset, built_stores):
    """read_many over batches of 256 ids of a seeded permutation, from an open store of N."""
    _time_batches(benchmark, "rand_batch", access_backend, storage_n, dataset, built_stores,
                  batches(shuffled(storage_n)))


def test_rand_item(benchmark, access_backend, storage_n, dataset, built_stores):
    """read_one over a seeded permutation of the ids; p50 and p99 latency in extra_info."""
    label(benchmark, "rand_item", access_backend, storage_n, dataset)
    path = built_stores.get(access_backend, storage_n)
    order = shuffled(storage_n).tolist()
    expected_images, expected_labels = dataset.take(storage_n)
    with open_store(path) as store:  # a sharded-<format> row opens as 'sharded'
        rounds = rounds_within_budget(store.read_one, order[0], MAX_ITEM_ROUNDS)
        ids = Cycle(order)
        image, image_label = benchmark.pedantic(store.read_one, setup=ids, rounds=rounds)
        key = ids.last
    assert np.array_equal(image, expected_images[key]) and image_label == expected_labels[key]
    benchmark.extra_info.update(latency_percentiles(benchmark), reads=rounds)
    record_throughput(benchmark, 1, image.nbytes, disk_usage(path), expected_images.nbytes)


def _time_batches(benchmark, operation, backend, count, dataset, built_stores, id_batches):
    label(benchmark, operation, backend, count, dataset)
    path = built_stores.get(backend, count)
    expected_images, expected_labels = dataset.take(count)
    with open_store(path) as store:
        rounds = rounds_within_budget(store.read_many, id_batches[0], MAX_BATCH_ROUNDS)
        batch_ids = Cycle(id_batches)
        images, labels = benchmark.pedantic(store.read_many, setup=batch_ids, rounds=rounds)
    last = batch_ids.last
    assert np.array_equal(images, expected_images[last])
    assert np.array_equal(labels, expected_labels[last])
    benchmark.extra_info.update(batch=BATCH, batches=rounds)
    record_throughput(benchmark, len(id_batches[0]), images[0].nbytes, disk_usage(path),
                      expected_images.nbytes)
