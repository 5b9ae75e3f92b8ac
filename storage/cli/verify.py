"""Read every image of a store and check every integrity record it has.

Reads go through the public API in batches (each backend checks its CRCs or checksums
as it reads); a batch that fails is halved until the damaged ids are named. A sharded
store is checked shard by shard: its index, each shard's own commit record, ids and
encoding, and the content checksum the index holds for it. Encoded images are checked as
the bytes the store holds (its CRCs), not decoded: a store keeps the bytes it was given.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storage import backend_of, open_store
from storage.errors import CorruptStoreError, KeyNotFoundError, StoreError
from storage.cli.info import store_format
from storage.registry import container_backends
from storage.sharded.index import ContentChecksum, read_index

BATCH_BYTES = 16 * 1024**2


@dataclass
class VerifyReport:
    path: str
    count: int = 0
    damaged: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.damaged and not self.problems


def verify_store(path, progress=None) -> VerifyReport:
    """Check the store at ``path``; a store that cannot even be opened raises."""
    started = time.monotonic()
    report = VerifyReport(str(path))
    if store_format(path) in container_backends():
        _verify_sharded(Path(path), report, progress)
    else:
        try:
            store = open_store(path)
        except Exception as error:
            if not is_damage(error):
                raise
            report.problems.append(f"the store cannot be opened: {error}")
        else:
            with store:
                try:
                    ids = store.ids()
                except Exception as error:
                    if not is_damage(error):
                        raise
                    report.problems.append(f"the store's ids cannot be read: {error}")
                    ids = np.empty(0, np.int64)
                report.count = len(ids)
                if progress:
                    progress.start(len(ids))
                report.damaged += _scan(store, ids, None, progress, report.problems)
    if progress:
        progress.finish()
    report.seconds = time.monotonic() - started
    return report


def _verify_sharded(path: Path, report: VerifyReport, progress) -> None:
    try:
        index = read_index(path)  # its CRC and layout; IncompleteStoreError propagates
    except CorruptStoreError as error:
        report.problems.append(str(error))
        return
    report.count = index.count
    if progress:
        progress.start(index.count)
    for shard in index.shards:
        expected = np.arange(shard.start, shard.stop, dtype=np.int64)
        try:
            store = open_store(path / shard.name)
            if backend_of(path / shard.name) != index.shard_format:
                raise CorruptStoreError(f"it is a {type(store).name} store, the index says "
                                        f"{index.shard_format}")
            if store.encoding != index.encoding:
                raise CorruptStoreError(f"it holds {store.encoding or 'pixel arrays'}, the "
                                        f"index says {index.encoding or 'pixel arrays'}")
            if not np.array_equal(store.ids(), expected):
                raise CorruptStoreError(f"it holds ids other than {shard.start}..{shard.stop - 1}")
        except StoreError as error:
            report.problems.append(f"{shard.name} (ids {shard.start}-{shard.stop - 1}): {error}")
            report.damaged += expected.tolist()
            continue
        checksum = ContentChecksum()
        with store:
            damaged = _scan(store, expected, checksum, progress, report.problems)
        report.damaged += damaged
        if not damaged and (checksum.images, checksum.labels) != (
                shard.images_crc32, shard.labels_crc32):
            report.problems.append(
                f"{shard.name} (ids {shard.start}-{shard.stop - 1}) reads back other images or "
                "labels than its index checksum records")


def is_damage(error: BaseException) -> bool:
    """Whether a read failed on the stored bytes, rather than on how it was asked.

    Our formats raise CorruptStoreError; the references reproduce classic code that lets
    its library's own errors through (Pillow's OSError, NumPy's ValueError).
    """
    if isinstance(error, (CorruptStoreError, KeyNotFoundError)):
        return True
    return isinstance(error, (OSError, ValueError, EOFError)) and not isinstance(error,
                                                                              StoreError)


def _scan(store, ids: np.ndarray, checksum, progress, problems: list[str]) -> list[int]:
    """Damaged ids among ``ids``; feeds ``checksum`` while every batch reads clean."""
    image_bytes = _image_bytes(store, ids)
    batch = max(1, BATCH_BYTES // image_bytes)
    damaged: list[int] = []
    for first in range(0, len(ids), batch):
        part = ids[first:first + batch]
        try:
            images, labels = store.read_many(part)
        except Exception as error:
            if not is_damage(error):
                raise
            if not damaged:  # the first failure says what kind of damage it is
                problems.append(f"reading ids {part[0]}..{part[-1]} failed: {error}")
            damaged += _bisect(store, part)
            checksum = None
        else:
            if checksum is not None and not damaged:
                checksum.add(images, labels)
        if progress:
            progress.advance(len(part), len(part) * image_bytes)
    return damaged


def _image_bytes(store, ids: np.ndarray) -> int:
    """About how many bytes one image reads as: its shape's, or an encoded image's length
    (the first one's; 64 KiB when that one is damaged: the scan then names it)."""
    if not store.encoding:
        return max(1, math.prod(store.image_shape or (1,)))
    if not len(ids):
        return 1
    try:
        return max(1, len(store.read_one(int(ids[0]))[0]))
    except Exception as error:
        if not is_damage(error):
            raise
        return 64 * 1024


def _bisect(store, ids: np.ndarray) -> list[int]:
    try:
        store.read_many(ids)
        return []
    except Exception as error:
        if not is_damage(error):
            raise
        if len(ids) == 1:
            return [int(ids[0])]
    middle = len(ids) // 2
    return _bisect(store, ids[:middle]) + _bisect(store, ids[middle:])


def id_ranges(ids) -> str:
    """``[1, 2, 3, 7]`` as ``1-3, 7``."""
    ids = sorted(set(ids))
    parts, first = [], None
    for position, key in enumerate(ids):
        if first is None:
            first = key
        if position + 1 == len(ids) or ids[position + 1] != key + 1:
            parts.append(str(first) if first == key else f"{first}-{key}")
            first = None
    return ", ".join(parts)
