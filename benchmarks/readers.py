"""Read a data set's batches with K worker processes, as a DataLoader does, and watch memory.

Each worker reads its share of the batches (every K-th) through
``dataset.__getitems__`` and sends ids, images and labels back through a queue;
the parent records when the first batch arrived and, from a sampling thread,
the peak of the proportional set size (PSS) summed over itself and its workers.
PSS charges a shared page to each of its n users by 1/n, so the sum counts it
once; a sum of RSS would count it once per process.
"""
from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_RESULT_TIMEOUT_S = 60  # a worker that sends nothing for this long has hung


@dataclass
class ReadRun:
    seconds: float              # first worker started to last batch received
    first_batch_seconds: float  # first worker started to first batch received
    peak_pss_bytes: int | None  # None where /proc has no smaps_rollup


def read_with_workers(dataset, batches: list[np.ndarray], workers: int, method: str,
                      on_batch: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
                      worker_init: Callable[[], None] | None = None) -> ReadRun:
    """Read every batch (positions in ``dataset``); ``on_batch(ids, images, labels)`` each.

    ``workers``: 0 reads in this process; K > 0 starts K processes with ``method``
    (fork, spawn, forkserver), each handed ``dataset`` as a DataLoader hands it.
    ``worker_init`` runs first in each worker, as DataLoader's ``worker_init_fn``
    (a spawned worker knows only the formats its imports register).
    """
    memory = _PssSampler()
    start = time.perf_counter()
    first = None
    if workers == 0:
        for positions in batches:
            on_batch(*_read(dataset, positions))
            first = first or time.perf_counter()
        memory.sample()
        return ReadRun(time.perf_counter() - start, first - start, memory.peak)
    context = multiprocessing.get_context(method)
    results = context.Queue()
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(dataset, batches[k::workers], results, worker_init))
                 for k in range(workers)]
    try:
        for process in processes:
            process.start()
        memory.watch([process.pid for process in processes])
        running = workers
        while running:
            message = _next_result(results, processes)
            if message[0] == "batch":
                on_batch(*message[1:])
                first = first or time.perf_counter()
            elif message[0] == "done":
                running -= 1
            else:
                raise RuntimeError(f"a reader process failed:\n{message[1]}")
        elapsed = time.perf_counter() - start
    finally:
        memory.stop()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return ReadRun(elapsed, (first or time.perf_counter()) - start, memory.peak)


def _read(dataset, positions):
    images, labels = dataset.read_batch(positions)
    return dataset.ids[np.asarray(positions, dtype=np.intp)], images, labels


def _worker(dataset, batches, results, worker_init) -> None:
    try:
        if worker_init is not None:
            worker_init()
        for positions in batches:
            results.put(("batch", *_read(dataset, positions)))
        results.put(("done",))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _next_result(results, processes):
    while True:
        try:
            return results.get(timeout=_RESULT_TIMEOUT_S)
        except queue.Empty:
            dead = [process.pid for process in processes
                    if not process.is_alive() and process.exitcode != 0]
            raise RuntimeError(f"reader processes sent nothing for {_RESULT_TIMEOUT_S} s "
                               f"(exited with an error: {dead})") from None


def pss_bytes(pid: int | str = "self") -> int | None:
    """Proportional set size of a process, from /proc/<pid>/smaps_rollup (Linux 4.14+)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


class _PssSampler:
    """Peak of Σ PSS over this process and the watched ones, sampled every few ms."""

    INTERVAL_S = 0.005

    def __init__(self):
        self._pids: list = ["self"]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak: int | None = None

    def watch(self, pids) -> None:
        self._pids = ["self", *pids]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        sizes = [pss_bytes(pid) for pid in self._pids]
        if sizes[0] is None:  # no smaps_rollup on this system
            return
        total = sum(size for size in sizes if size is not None)  # a worker that exited: 0
        self.peak = max(self.peak or 0, total)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self.sample()
