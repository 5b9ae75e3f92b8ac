"""Run per-image work on every core with threads.

The codecs and file calls used here release the GIL, so threads scale without
the start-up and copying costs of processes, and they write straight into the
caller's preallocated output array.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from storage.core.handles import ProcessLocal

WORKERS = max(1, min(8, os.cpu_count() or 1))
_MIN_PER_WORKER = 64  # below this, handing work to threads costs more than it saves
# A forked child inherits no threads: it starts a pool of its own.
_pool = ProcessLocal(lambda: ThreadPoolExecutor(WORKERS, thread_name_prefix="storage"))


def for_each_slice(work: Callable[[int, int], None], count: int) -> None:
    """Call ``work(start, stop)`` over contiguous slices covering ``range(count)``."""
    workers = min(WORKERS, count // _MIN_PER_WORKER)
    if workers <= 1:
        work(0, count)
        return
    bounds = [count * k // workers for k in range(workers + 1)]
    pool = _pool.get()
    futures = [pool.submit(work, bounds[k], bounds[k + 1]) for k in range(workers)]
    for future in futures:
        future.result()  # re-raises the first worker error here
