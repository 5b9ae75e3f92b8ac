"""Where shard tasks run: Dask distributed (the default), a process pool, or in-process.

Each executor takes shard tasks and yields their records as they complete. Dask starts a
``LocalCluster`` of one single-threaded worker per core and closes it afterwards, or
attaches to a running scheduler (``--scheduler`` or $DASK_SCHEDULER_ADDRESS); it re-runs
the tasks of a worker it loses. The pool and in-process executors exist to measure Dask
against.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import uuid

from storage.convert.shard import build_shard
from storage.errors import SchedulerError

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = "10s"


class DaskExecutor:
    def __init__(self, client):
        self.client = client

    def run(self, tasks):
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]  # keys stay unique on a scheduler shared by many runs
        futures = self.client.map(build_shard, tasks, pure=False,
                                  key=[f"build-{task.plan.name}-{run}" for task in tasks])
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel([future for future in futures if not future.done()])


class PoolExecutor:
    def __init__(self, processes: int):
        self.processes = processes

    def run(self, tasks):
        context = multiprocessing.get_context("spawn")
        with context.Pool(self.processes) as pool:
            yield from pool.imap_unordered(build_shard, tasks)


class SerialExecutor:
    def run(self, tasks):
        for task in tasks:
            yield build_shard(task)


@contextlib.contextmanager
def dask_executor(scheduler: str | None = None, workers: int | None = None):
    """A DaskExecutor on ``scheduler`` (or $DASK_SCHEDULER_ADDRESS), else on a LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV)
    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError, TypeError) as error:
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {address!r} ({error}); start one with "
                "`dask scheduler` and pass its tcp://HOST:PORT address, or leave --scheduler "
                "out to use the cores of this machine") from None
        with client:
            yield DaskExecutor(client)
        return
    with _workers_ignore_ctrl_c(), dask.config.set(_local_worker_config()):
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=":0",  # never a taken port
                               silence_logs=logging.CRITICAL)  # shutdown races log errors
    try:
        with Client(cluster, timeout=CONNECT_TIMEOUT) as client:
            yield DaskExecutor(client)
    finally:
        cluster.close()


def _local_worker_config() -> dict:
    """Local workers that spend their cores on shard tasks, as a process pool's do.

    distributed's defaults suit a long-lived cluster with a dashboard; on a machine of a
    few cores their background work takes a share of the conversion's CPU (an idle
    LocalCluster(2) used 0.15 of a core, these settings 0.02). Off: the statistical
    profiler (a thread taking the GIL every 10 ms to sample the task's stack) and the
    nanny's MALLOC_TRIM_THRESHOLD_ (each freed batch handed back to the kernel, the next
    faulted in anew). Slower: the event loops' tick check, system and memory monitors
    (task memory is bounded by the batch size). A scheduler we attach to keeps its own.
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {"distributed.worker.profile.enabled": False,
            "distributed.nanny.pre-spawn-environ": environ,
            "distributed.admin.tick.interval": "200ms",
            "distributed.admin.system-monitor.interval": "2s",
            "distributed.worker.memory.monitor-interval": "1s"}


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Start local workers with SIGINT ignored (a child inherits that disposition).

    Ctrl-C in a terminal reaches the whole process group; the driver alone handles it and
    closes the cluster, instead of every worker printing its own KeyboardInterrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
