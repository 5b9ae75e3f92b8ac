"""Arrow IPC and Parquet parts holding encoded images: the image column is ``large_binary``.

A store whose ``store.json`` records an ``"encoding"`` has the parts of its format
(``storage.formats.arrow``, ``storage.formats.parquet``) with these columns::

    id        int64
    label     int64
    checksum  uint64: CRC-32 of id and label (int64 LE each) followed by the image's
              bytes (``storage.core.checksums.bytes_checksums``)
    image     large_binary (Arrow) / BYTE_ARRAY (Parquet): the JPEG or PNG file's
              bytes, byte for byte

and the schema metadata ``{"encoding": "jpeg"}`` (or ``"png"``). ``large_binary``
(64-bit offsets), so that a batch may hold more than 2 GiB of images. Parts,
commits (one part per ``write_many``, renamed into place), overwrites (a later
part's row wins) and blocks (Arrow record batches of 10,000 rows, Parquet row
groups) are the array layout's. Every read checks the CRC: damage raises
CorruptStoreError, never another image. Plain pyarrow reads it:
``pyarrow.ipc.open_file(part).read_all()`` or ``pyarrow.parquet.read_table(part)``,
then ``table.column("image")[i].as_py()``.
"""
from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.checksums import bytes_checksums, raise_on_failed_checksums
from storage.core.flat_bytes import slice_values
from storage.errors import CorruptStoreError
from storage.formats.arrow import ArrowBackend
from storage.formats.parquet import ParquetBackend

_MAX_VALUE = 2**31 - 1


def encoded_schema(encoding: str) -> pa.Schema:
    """The schema of a part holding ``encoding`` images."""
    return pa.schema([pa.field("id", pa.int64(), nullable=False),
                      pa.field("label", pa.int64(), nullable=False),
                      pa.field("checksum", pa.uint64(), nullable=False),
                      pa.field("image", pa.large_binary(), nullable=False)],
                     metadata={"encoding": encoding})


def binary_values(column: pa.Array) -> tuple[np.ndarray, memoryview]:
    """A large_binary column's value offsets (rows + 1) and data, without a copy."""
    if column.null_count or not pa.types.is_large_binary(column.type):
        raise CorruptStoreError("an image column holds nulls or is not large_binary; "
                                "the store is damaged: restore it from a copy")
    _, offsets, data = column.buffers()
    rows = len(column)
    if offsets is None or offsets.size < (column.offset + rows + 1) * 8:
        raise CorruptStoreError("an image column holds too few offsets; the store is damaged")
    starts = np.frombuffer(offsets, np.int64, rows + 1, column.offset * 8)
    view = memoryview(data) if data is not None else memoryview(b"")
    if rows and (starts[0] < 0 or starts[-1] > len(view) or np.any(np.diff(starts) < 1)):
        raise CorruptStoreError("an image column has offsets outside its data; "
                                "the store is damaged: restore it from a copy")
    return starts, view


def _plain_rows(table: pa.Table, part: Path) -> dict[int, tuple[bytes, int]]:
    rows = {}
    for key, label, checksum, data in zip(*(table.column(name).to_pylist() for name in
                                            ("id", "label", "checksum", "image"))):
        head = np.array([key, label], "<i8").tobytes()
        if zlib.crc32(data, zlib.crc32(head)) != checksum:
            raise ValueError(f"the row of id {key} in '{part}' fails its CRC-32")
        rows[key] = (data, label)
    return rows


def read_arrow_plainly(path: Path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with pyarrow's IPC reader and zlib alone; later parts win."""
    store = {}
    for part in sorted((path / "parts").glob("part-*.arrow")):
        with pa.memory_map(str(part)) as source:
            store.update(_plain_rows(pa.ipc.open_file(source).read_all(), part))
    return store


def read_parquet_plainly(path: Path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with pyarrow.parquet and zlib alone; later parts win."""
    store = {}
    for part in sorted((path / "parts").glob("part-*.parquet")):
        store.update(_plain_rows(pq.read_table(part), part))
    return store


class EncodedParts:
    """Encoded images in a PartStore: placed before the format's class, it replaces what
    the format writes in and reads from the image column."""

    capabilities = Capabilities(encodings=("jpeg", "png"), arrays=False,
                                max_value_bytes=_MAX_VALUE)
    encoded_variant = None

    # ---- the image column ----------------------------------------------------------------
    def _checksums_of(self, ids, labels, datas) -> np.ndarray:
        return bytes_checksums(ids, labels, datas)

    def _part_content(self, datas):
        return datas

    def _part_schema(self, datas) -> pa.Schema:
        return encoded_schema(self.encoding)

    def _image_column(self, datas) -> pa.Array:
        return pa.array(datas, pa.large_binary())

    def _expected_schema(self) -> pa.Schema:
        return encoded_schema(self.encoding)

    def _block_content(self, column: pa.Array):
        return binary_values(column)

    # ---- reading -------------------------------------------------------------------------
    _read_one = Backend._read_one  # the default (through _read_many), not the array layout's

    def _read_many(self, ids):
        rows, found = self._rows.rows(ids)
        if not found.all():
            raise self._missing(ids[~found])
        datas = [b""] * len(ids)
        blocks = np.searchsorted(self._block_starts, rows, side="right") - 1
        order = np.argsort(blocks, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(blocks[order])) + 1):
            if not len(group):
                continue
            block = int(blocks[group[0]])
            part, block_in_part = self._blocks[block]
            starts, view = self._block_images(self._handles[part], block_in_part)
            if len(starts) != self._block_sizes[block] + 1:
                raise CorruptStoreError(f"a block of {self._where()} holds {len(starts) - 1} "
                                        "images, not what its index says; it is damaged")
            local = rows[group] - self._block_starts[block]
            values = slice_values(view, starts[local], starts[local + 1] - starts[local])
            for position, data in zip(group.tolist(), values):
                datas[position] = data
        labels = self._labels[rows]
        bad = bytes_checksums(ids, labels, datas) != self._checksums[rows]
        raise_on_failed_checksums(ids, bad, self._where())
        return datas, labels


class EncodedArrowBackend(EncodedParts, ArrowBackend):
    """``ArrowBackend`` with ``encoding=`` is one of these."""
    # The crash tests kill it where its commit differs from the array layout's, and at
    # two of the ~150 writes a small write session makes to its parts.
    facts = dataclasses.replace(ArrowBackend.facts, plain_reader=read_arrow_plainly,
                                crash_points=(("before-rename", 2),),
                                syscall_kills=(5, 100))


class EncodedParquetBackend(EncodedParts, ParquetBackend):
    """``ParquetBackend`` with ``encoding=`` is one of these."""
    # The crash tests kill it where its commit differs from the array layout's, and at
    # two of the ~95 writes a small write session makes to its parts.
    facts = dataclasses.replace(ParquetBackend.facts, plain_reader=read_parquet_plainly,
                                crash_points=(("before-rename", 2),),
                                syscall_kills=(5, 70))
