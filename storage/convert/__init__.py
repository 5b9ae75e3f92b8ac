"""Convert CIFAR batches, an ImageFolder or a store into a store or a sharded store.

>>> convert("cifar-10-batches-py", "cifar.lmdb", "lmdb")               # one store
>>> convert("cifar-10-batches-py", "cifar-shards", "lmdb", shards=16)  # sharded, on Dask

>>> convert("photos", "photos.lmdb", "lmdb", encoded="jpeg")           # JPEG bytes, quality 90

Both resume: run the same call again after a crash or Ctrl-C and it continues.
"""
from __future__ import annotations

import contextlib

from storage.convert.engines import dask_executor
from storage.convert.output import check_format_holds, choose_output
from storage.convert.sharded import ConversionResult, convert_sharded
from storage.convert.single import convert_single
from storage.convert.sources import open_source
from storage.errors import DatasetError, UnknownBackendError
from storage.registry import our_backends, reference_backends


def convert(source, destination, store_format: str, *, shards: int | None = None,
            shard_size: int | None = None, executor=None, scheduler: str | None = None,
            workers: int | None = None, resume: bool = True, split: str = "train",
            encoded: str = "none", progress=None) -> ConversionResult:
    """Convert ``source`` into ``destination``; sharded when ``shards`` or ``shard_size``.

    Shards are built by ``executor`` when given, else on Dask: a LocalCluster of
    ``workers`` processes, or the scheduler at ``scheduler`` / $DASK_SCHEDULER_ADDRESS.
    ``encoded`` (``storage.convert.output``): ``"none"`` pixel arrays, ``"jpeg"``/``"png"``
    images encoded here, ``"keep"`` an encoded source's bytes as they are.
    """
    formats = our_backends() + reference_backends()
    if store_format not in formats:  # fails before any work
        raise UnknownBackendError(f"unknown format {store_format!r}; choose one of {formats} "
                                  "(and --shards K for a sharded store)")
    if encoded in ("jpeg", "png"):
        check_format_holds(store_format, encoded)  # before reading the source
    opened = open_source(source, split)
    if opened.info.count == 0:
        raise DatasetError(f"the source '{source}' holds no images; nothing to convert")
    output = choose_output(encoded, opened.info, store_format)
    if shards is None and shard_size is None:
        return convert_single(opened, destination, store_format, output, resume=resume,
                              progress=progress)

    def engine():
        if executor is not None:
            return contextlib.nullcontext(executor)
        return dask_executor(scheduler, workers)

    return convert_sharded(opened, destination, store_format, output, engine, shards=shards,
                           shard_size=shard_size, resume=resume, progress=progress)


__all__ = ["ConversionResult", "convert"]
