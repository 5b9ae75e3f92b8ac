"""Parallel readers: K worker processes read disjoint shuffled batches of one store.

What a DataLoader with ``num_workers=K`` does: the parent opens the store (it
needs ``len``), starts K workers by fork or spawn and receives every batch
through a queue. A round reads the first ``PARALLEL_BATCHES`` batches of 256 of
a seeded permutation; K = 0 reads them in the parent, the baseline to beat.
``extra_info``: images/s, time to the first batch, peak Σ PSS of parent and
workers and what each worker added to it. Runs with ``--storage-parallel``.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.measure import label
from benchmarks.patterns import BATCH, batches, shuffled
from benchmarks.readers import pss_bytes, read_with_workers
from storage.training import StoreDataset
from tests.memory_backend import register as register_toy_format

PARALLEL_BATCHES = 40
PARALLEL_ROUNDS = 3
READERS = [("main", 0), ("fork", 1), ("fork", 2), ("fork", 4),
           ("spawn", 1), ("spawn", 2), ("spawn", 4)]

# Deselected unless --storage-parallel is given (conftest.py).
pytestmark = [pytest.mark.timeout(1800), pytest.mark.storage_parallel]


@pytest.mark.parametrize("method,workers", READERS, ids=[f"{m}-K={k}" for m, k in READERS])
def test_parallel_read(benchmark, storage_backend, storage_n, method, workers, dataset,
                       built_stores):
    """Read shuffled batches of 256 of a store of N with K processes started by fork or spawn."""
    label(benchmark, f"parallel_read_{method}_K{workers}", storage_backend, storage_n, dataset)
    side = benchmark.extra_info["side"]
    benchmark.group = f"parallel_read {method} K={workers} {side}px N={storage_n}"
    reader = StoreDataset(built_stores.get(storage_backend, storage_n), storage_backend)
    assert len(reader) == storage_n  # the parent opens the store, as a DataLoader's does
    plan = batches(shuffled(storage_n))[:PARALLEL_BATCHES]
    wanted = np.sort(np.concatenate(plan))
    expected_images, _ = dataset.take(storage_n)
    before = pss_bytes()
    runs, received = [], []

    def on_batch(keys, images, labels):
        received.append(keys)
        if len(received) == 1:  # one image per round checked, off the critical path
            assert np.array_equal(images[0], expected_images[keys[0]])

    def read_all():
        received.clear()
        # A spawned worker knows the toy format (--storage-backends memory) once registered.
        runs.append(read_with_workers(reader, plan, workers, method, on_batch,
                                      worker_init=register_toy_format))
        assert np.array_equal(np.sort(np.concatenate(received)), wanted)  # each id once

    benchmark.pedantic(read_all, rounds=PARALLEL_ROUNDS if benchmark.enabled else 1)
    reader.close()
    peak = max((run.peak_pss_bytes or 0) for run in runs)
    benchmark.extra_info.update(
        method=method, workers=workers, batch=BATCH, images_per_round=len(wanted),
        images_per_s=round(len(wanted) / float(np.median([run.seconds for run in runs])), 1),
        first_batch_s=round(float(np.median([run.first_batch_seconds for run in runs])), 4),
        peak_pss_MB=round(peak / 1e6, 1) if peak else None,
        pss_added_per_worker_MB=(round((peak - before) / workers / 1e6, 1)
                                 if peak and before and workers else None),
    )
