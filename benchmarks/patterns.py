"""How a training loop visits a store: id order, a seeded shuffle, batches of 256."""
from __future__ import annotations

import itertools
import time

import numpy as np

BATCH = 256
SEED = 0
# Rounds of a pattern: as many as fit in this many seconds, within these bounds.
ROUND_BUDGET_S = 1.0
MIN_ROUNDS = 5
MAX_ITEM_ROUNDS = 5_000  # enough single reads for a stable p99
MAX_BATCH_ROUNDS = 400   # a whole scan of N = 100,000 is 391 batches


def shuffled(count: int) -> np.ndarray:
    """The seeded permutation of ids 0..count-1 every random pattern follows."""
    return np.random.default_rng(SEED).permutation(count).astype(np.int64)


def batches(ids: np.ndarray, size: int = BATCH) -> list[np.ndarray]:
    return [ids[start:start + size] for start in range(0, len(ids), size)]


class Cycle:
    """Setup for benchmark.pedantic: the next item each round, wrapping; ``last`` is the latest."""

    def __init__(self, items):
        self._items, self.last = itertools.cycle(items), None

    def __call__(self):
        self.last = next(self._items)
        return (self.last,), {}


def rounds_within_budget(read, first, cap: int) -> int:
    """Rounds for ``read``: time one untimed call on ``first``, fill the budget, keep bounds."""
    start = time.perf_counter()
    read(first)
    elapsed = max(time.perf_counter() - start, 1e-7)
    return max(MIN_ROUNDS, min(cap, int(ROUND_BUDGET_S / elapsed)))


def latency_percentiles(benchmark) -> dict:
    """p50 and p99 of the rounds in µs (None when benchmarks are disabled: the smoke run)."""
    stats = getattr(benchmark, "stats", None)
    if not stats:
        return {}
    times = np.asarray(stats.stats.data) * 1e6
    return {"p50_us": round(float(np.percentile(times, 50)), 2),
            "p99_us": round(float(np.percentile(times, 99)), 2)}
