"""Shared pieces of the benchmarks: rounds per size, stores built off the clock, extra_info."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from benchmarks.settings import SHARDED_PREFIX
from storage import open_store
from storage.convert import convert
from storage.convert.engines import SerialExecutor

# Rounds per store size: enough for a stable median, few enough that N=100,000 fits
# the suite's time budget. Single-image operations take many cheap rounds.
_ROUNDS = {10: 30, 100: 20, 1_000: 10, 10_000: 5, 100_000: 3}
SINGLE_ROUNDS = 200


def rounds_for(count: int) -> int:
    return next((rounds for size, rounds in _ROUNDS.items() if count <= size), 3)


def label(benchmark, operation: str, backend: str, count: int, dataset) -> None:
    """Group backends side by side per operation, image side and N; say what was measured."""
    side = int(dataset.images.shape[1])
    benchmark.group = f"{operation} {side}px N={count}"
    benchmark.extra_info.update(
        operation=operation, backend=backend, N=count, side=side, dataset=dataset.name,
        image_shape=list(dataset.images.shape[1:]),
    )


def record_throughput(benchmark, images_per_round: int, image_bytes: int,
                      bytes_on_disk: int, raw_bytes: int) -> None:
    benchmark.extra_info.update(
        bytes_on_disk=int(bytes_on_disk),
        raw_pixel_bytes=int(raw_bytes),
        disk_vs_raw=round(bytes_on_disk / raw_bytes, 4) if raw_bytes else None,
    )
    stats = getattr(benchmark, "stats", None)
    if stats:  # None when benchmarks are disabled (the smoke run)
        median = stats.stats.median
        benchmark.extra_info.update(
            images_per_s=round(images_per_round / median, 1),
            MB_per_s=round(images_per_round * image_bytes / median / 1e6, 2),
        )


def build_store(path: Path, backend: str, images, labels: np.ndarray,
                encoding: str | None = None) -> Path:
    with open_store(path, backend, mode="w", durable=False, encoding=encoding) as store:
        store.write_many(images, labels)
    return path


class StoreCache:
    """Stores built once per (backend, image side, N): reads share one, a writer takes it over.

    Building a store of 100,000 PNG files takes longer than measuring it, so each is
    built once; a benchmark that adds images takes the store out of the cache. With
    ``keep``, stores outlive the session under ``root`` and later sessions reuse
    them (the gate measures one revision many times); a writer then gets a copy.
    """

    def __init__(self, root: Path, datasets, *, keep: bool = False, encoded=None,
                 shards: int | None = None):
        self.root, self.datasets, self.keep = root, datasets, keep
        self.encoded = encoded  # side -> EncodedDataset, for stores of encoded images
        self.shards = shards  # shards of a "sharded-<format>" store
        self._built, self._taken = {}, []

    def get(self, backend: str, count: int, side: int = 32, encoding: str | None = None) -> Path:
        key = (backend, side, count) if encoding is None else (backend, side, count, encoding)
        if key not in self._built:
            path = self.root / f"{backend}-{side}px-{count}"
            if encoding is not None:
                path = path.with_name(f"{path.name}-{encoding}")
            if not self.keep:
                path = path.with_name(f"{path.name}-{len(self._taken)}")
            self._built[key] = (path if self._complete(path, side, encoding)
                                else self._build(path, key))
        return self._built[key]

    def take(self, backend: str, count: int, side: int = 32) -> Path:
        """A store of ``count`` images that the caller may modify (the cache forgets it)."""
        path = self.get(backend, count, side)
        if self.keep:  # later sessions still need the original
            copy = self.root / f"{path.name}-taken-{len(self._taken)}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(path, copy, symlinks=True)
            path = copy
        else:
            del self._built[(backend, side, count)]
        self._taken.append(path)
        return path

    def remove_all(self) -> None:
        for path in self._taken:
            shutil.rmtree(path, ignore_errors=True)
        if not self.keep:
            for path in self._built.values():
                shutil.rmtree(path, ignore_errors=True)
        self._built.clear()

    def _source(self, side: int, encoding: str | None):
        return self.datasets(side) if encoding is None else self.encoded(side)

    def _build(self, path: Path, key) -> Path:
        backend, side, count, *encoding = key
        encoding = encoding[0] if encoding else None
        source = self._source(side, encoding)
        shutil.rmtree(path, ignore_errors=True)  # a build cut short in an earlier session
        if backend.startswith(SHARDED_PREFIX):  # the format's store, converted into shards
            shard_format = backend.removeprefix(SHARDED_PREFIX)
            convert(self.get(shard_format, count, side), path, shard_format,
                    shards=self.shards, executor=SerialExecutor())
        else:
            images, labels = source.take(count)
            build_store(path, backend, images, labels, encoding)
        if self.keep:
            (path.parent / f"{path.name}.complete").write_text(source.name)
        return path

    def _complete(self, path: Path, side: int, encoding: str | None = None) -> bool:
        """A kept store whose build finished, of the same data set (else it is rebuilt)."""
        stamp = path.parent / f"{path.name}.complete"
        return (self.keep and path.is_dir() and stamp.exists()
                and stamp.read_text() == self._source(side, encoding).name)
