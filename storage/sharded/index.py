"""The files that commit a sharded store: per-shard markers, then ``index.json``.

A shard counts only once its marker exists; the index, written last by a temporary
name and a rename, lists every shard and is the commit point of the whole store.
Both carry a CRC of their own fields, and the index a content checksum per shard
(CRC-32 of its labels as int64 little-endian and of its images' bytes, in id order;
for encoded images, of each one's length as int64 little-endian and its bytes) that
``verify`` recomputes from what it reads.
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from storage.errors import CorruptStoreError, IncompleteStoreError
from storage.core.files import write_json_atomically

INDEX = "index.json"
INDEX_FORMAT = "sharded-image-store"
VERSION = 1
MARKER_SUFFIX = ".done"
TEMPORARY_PREFIX = ".tmp-"
LEASE = "convert.lease"
_SHARD_NAME = re.compile(r"shard-\d{5,}")


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


def is_shard_name(name: str) -> bool:
    return bool(_SHARD_NAME.fullmatch(name))


@dataclass(frozen=True)
class ShardRecord:
    """One committed shard: its directory name, id range, size and content checksums."""

    name: str
    start: int
    count: int
    bytes: int
    images_crc32: int
    labels_crc32: int

    @property
    def stop(self) -> int:
        return self.start + self.count


class ContentChecksum:
    """CRC-32 of the labels and of the images of consecutive batches, in id order."""

    def __init__(self):
        self.images = 0
        self.labels = 0

    def add(self, images, labels: np.ndarray) -> None:
        """``images``: pixels (N, H, W, C), or a list of encoded images' bytes."""
        if isinstance(images, np.ndarray):
            self.images = zlib.crc32(np.ascontiguousarray(images).data, self.images)
        else:  # the lengths too: bytes moved from one image to the next change the sum
            for data in images:
                self.images = zlib.crc32(data, zlib.crc32(len(data).to_bytes(8, "little"),
                                                          self.images))
        self.labels = zlib.crc32(np.asarray(labels, "<i8").tobytes(), self.labels)


@dataclass(frozen=True)
class ShardPlan:
    """What one shard must hold: the ids [start, start + count) of a conversion."""

    number: int
    start: int
    count: int
    shard_format: str
    source_hash: str
    encoded: str | None = None  # the --encoded choice; None for pixel arrays

    def to_json(self) -> dict:
        """Its fields; ``encoded`` only when set, so markers of array shards stay as they were."""
        fields = asdict(self)
        if fields["encoded"] is None:
            del fields["encoded"]
        return fields

    @property
    def name(self) -> str:
        return shard_name(self.number)

    @property
    def stop(self) -> int:
        return self.start + self.count


def _with_crc(fields: dict) -> dict:
    return {**fields, "crc": _crc(fields)}


def _crc(fields: dict) -> int:
    body = {key: value for key, value in fields.items() if key != "crc"}
    return zlib.crc32(json.dumps(body, sort_keys=True).encode())


def _load_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CorruptStoreError(f"'{path}' is not readable JSON ({error}); the file is damaged") \
            from error
    if not isinstance(content, dict) or content.get("crc") != _crc(content):
        raise CorruptStoreError(f"'{path}' fails its CRC; the file is damaged")
    return content


# ---- markers: one per committed shard ---------------------------------------------------
def marker_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}{MARKER_SUFFIX}"


def write_marker(directory: Path, plan: ShardPlan, record: ShardRecord) -> None:
    fields = {"plan": plan.to_json(), "shard": asdict(record)}
    write_json_atomically(marker_path(directory, plan.name), _with_crc(fields))


def read_marker(directory: Path, plan: ShardPlan) -> ShardRecord | None:
    """The shard's record when its marker is intact and belongs to ``plan``, else None."""
    path = marker_path(directory, plan.name)
    if not path.exists():
        return None
    try:
        content = _load_json(path)
        if content.get("plan") != plan.to_json():
            return None
        record = ShardRecord(**content["shard"])
    except (CorruptStoreError, KeyError, TypeError):
        return None
    return record if (record.name, record.start, record.count) == (
        plan.name, plan.start, plan.count) else None


def marker_plan(path: Path) -> dict | None:
    """The plan a marker was written for (to tell a conversion of something else), or None."""
    try:
        return _load_json(path).get("plan")
    except CorruptStoreError:
        return None


# ---- the index: the commit point ----------------------------------------------------------
@dataclass(frozen=True)
class ShardIndex:
    shard_format: str
    count: int
    image_shape: tuple[int, int, int] | None  # None for encoded images, which record none
    source_hash: str
    source: str
    classes: tuple[str, ...] | None
    shards: tuple[ShardRecord, ...]
    encoding: str | None = None  # of the shards' images; None for pixel arrays
    encoded: str | None = None   # the --encoded choice that made them

    def to_json(self) -> dict:
        return _with_crc({
            "format": INDEX_FORMAT, "version": VERSION, "shard_format": self.shard_format,
            "count": self.count,
            "image_shape": list(self.image_shape) if self.image_shape is not None else None,
            "encoding": self.encoding, "encoded": self.encoded,
            "source": {"description": self.source, "manifest_sha256": self.source_hash},
            "classes": list(self.classes) if self.classes is not None else None,
            "shards": [asdict(shard) for shard in self.shards],
        })


def write_index(directory: Path, index: ShardIndex) -> None:
    write_json_atomically(Path(directory) / INDEX, index.to_json())


def read_index(directory: Path) -> ShardIndex:
    """The index of the sharded store at ``directory``, checked; refuses one without it."""
    path = Path(directory) / INDEX
    if not path.exists():
        raise IncompleteStoreError(
            f"the sharded store at '{directory}' has no {INDEX}: its conversion has not "
            "finished; run the same `python -m storage convert` command again to complete it")
    content = _load_json(path)
    try:
        if content["format"] != INDEX_FORMAT or content["version"] != VERSION:
            raise CorruptStoreError(
                f"'{path}' is format {content['format']!r} version {content['version']!r}; "
                f"this library reads {INDEX_FORMAT!r} version {VERSION}")
        shards = tuple(ShardRecord(**shard) for shard in content["shards"])
        index = ShardIndex(
            shard_format=content["shard_format"], count=content["count"],
            image_shape=(tuple(content["image_shape"]) if content["image_shape"] is not None
                         else None),
            source_hash=content["source"]["manifest_sha256"],
            source=content["source"]["description"],
            classes=tuple(content["classes"]) if content["classes"] is not None else None,
            shards=shards, encoding=content.get("encoding"), encoded=content.get("encoded"))
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptStoreError(f"'{path}' lacks or mangles a field ({error!r})") from error
    _check_layout(index, path)
    return index


def _check_layout(index: ShardIndex, path: Path) -> None:
    """Shards must tile [0, count) in order, under plain names: the file is untrusted."""
    expected = 0
    for shard in index.shards:
        if not (is_shard_name(shard.name) and isinstance(shard.start, int)
                and isinstance(shard.count, int) and shard.start == expected and shard.count > 0):
            raise CorruptStoreError(
                f"'{path}' lists shard {shard.name!r} at {shard.start!r} (+{shard.count!r}); "
                f"shards must be named shard-NNNNN and tile the ids from 0; the index is damaged")
        expected = shard.stop
    if expected != index.count or not index.shards:
        raise CorruptStoreError(f"'{path}' counts {index.count!r} images but its shards hold "
                                f"{expected}; the index is damaged")
