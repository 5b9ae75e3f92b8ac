"""Build and commit one shard; runs on a worker, safe to run twice or to be killed anywhere.

The shard is written in the worker's local directory, moved into the destination under a
temporary name, renamed to its own name, and only then given its marker. A killed task
leaves a temporary (removed by the next run) or a shard without a marker (rebuilt); a
task run twice (Dask re-runs tasks of a worker it lost) finds the shard already in place
and leaves it.

A task holds its shard's lock (``shard_lock``) from its first look at the marker to the
marker written. A driver that was stopped (Ctrl-C, or killed while attached to a cluster)
leaves its running tasks at work; the next run takes each shard's lock before it removes
that shard's leftovers, so it waits for such a task instead of deleting under its feet.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from storage import open_store
from storage.convert.output import Output
from storage.errors import DatasetError
from storage.core.files import disk_usage, fsync_directory
from storage.sharded.index import (
    TEMPORARY_PREFIX, ContentChecksum, ShardPlan, ShardRecord, read_marker, write_marker)

BATCH_BYTES = 16 * 1024**2  # images read and written at a time: bounds a worker's memory
LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class ShardTask:
    plan: ShardPlan
    part: object  # a source part: .batches(size) yields (images, labels)
    destination: str
    image_bytes: int  # decoded: bounds the pixels a batch holds
    output: Output = Output()  # pixel arrays, or what --encoded asked for


def build_shard(task: ShardTask) -> ShardRecord:
    """Build, move into place and mark one shard; return its record."""
    destination = Path(task.destination)
    with shard_lock(destination, task.plan.name):
        done = read_marker(destination, task.plan)
        if done is not None and (destination / task.plan.name).is_dir():
            return done  # this task ran before (Dask re-ran it, or a driver resumed)
        return _build(task, destination)


@contextlib.contextmanager
def shard_lock(destination: Path, name: str):
    """Exclusive use of shard ``name`` of ``destination``, waiting for a holder to finish.

    The kernel drops the lock with its process, so a killed task never leaves it held.
    """
    descriptor = os.open(destination / f"{name}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _build(task: ShardTask, destination: Path) -> ShardRecord:
    with tempfile.TemporaryDirectory(prefix="shard-build-", dir=_local_directory()) as scratch:
        built = Path(scratch) / task.plan.name
        checksum = _write_shard(task, built)
        record = ShardRecord(task.plan.name, task.plan.start, task.plan.count,
                             disk_usage(built), checksum.images, checksum.labels)
        _fsync_tree(built)
        temporary = destination / f"{TEMPORARY_PREFIX}{task.plan.name}-{uuid.uuid4().hex}"
        shutil.move(built, temporary)  # a rename on one file system, else a copy
        _fsync_tree(temporary)
        _rename_into_place(temporary, destination / task.plan.name)
    write_marker(destination, task.plan, record)
    return record


def _write_shard(task: ShardTask, path: Path) -> ContentChecksum:
    checksum = ContentChecksum()
    batch = max(1, BATCH_BYTES // task.image_bytes)
    output = task.output
    with open_store(path, task.plan.shard_format, "w", durable=False,
                    encoding=output.encoding) as store:
        next_id = task.plan.start
        for images, labels in task.part.batches(batch, raw=output.raw):
            images = output.prepare(images)
            store.write_many(images, labels, ids=range(next_id, next_id + len(images)))
            checksum.add(images, labels)
            next_id += len(images)
    if next_id != task.plan.start + task.plan.count:
        raise DatasetError(f"the source gave {next_id - task.plan.start} images for "
                           f"{task.plan.name}, not {task.plan.count}: it changed during the "
                           "conversion; convert again")
    return checksum


def _rename_into_place(temporary: Path, final: Path) -> None:
    try:
        os.rename(temporary, final)
    except OSError as error:
        # Another run of this task got there first; its shard holds the same images.
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        shutil.rmtree(temporary)
    fsync_directory(final.parent)


def _fsync_tree(path: Path) -> None:
    """The shard's bytes on disk before its marker says it is there."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_directory(Path(root))


def _local_directory() -> str | None:
    """The Dask worker's local directory when running on one, else the system's temp."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return None
