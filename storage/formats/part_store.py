"""The Backend for stores of immutable part files (Arrow IPC, Parquet): index, writes, reads.

Every part holds the columns ``id`` int64, ``label`` int64, ``checksum`` uint64
(``storage.core.checksums``: of id, label and pixels) and ``image``
``fixed_size_binary(H*W*C)``, split into blocks (Arrow record batches, Parquet
row groups). Opening a store reads the ``id``, ``label`` and ``checksum``
columns of every part into one index; pixels are read only when asked for.
Each ``write_many`` and each ``write_one`` appends one part (see
``storage.formats.parts``): a one-row part per ``write_one`` is correct but
slow to open in bulk, so write batches where you can. An overwrite appends the
new rows too; the newest row of an id is the one read (``LatestRows``).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.checksums import image_checksum, image_checksums, verify_checksums
from storage.core.files import WriterLock
from storage.errors import CorruptStoreError
from storage.formats.latest_rows import LatestRows
from storage.formats.parts import PartFiles

COLUMNS = ("id", "label", "checksum", "image")


@dataclass
class PartIndex:
    """What opening a part reads: its index columns and the sizes of its blocks."""
    ids: np.ndarray
    labels: np.ndarray
    checksums: np.ndarray
    block_rows: list[int]


class PartStore(Backend):
    """A Backend over ``PartFiles``; a format supplies how a part is written and read."""

    capabilities = Capabilities(overwrite=True, write_one=True)
    suffix: str  # of the part files

    # ---- what a format implements --------------------------------------------------------
    @abc.abstractmethod
    def _write_part(self, path, ids, labels, checksums, images) -> None:
        """Write one complete part file at ``path``."""

    @abc.abstractmethod
    def _open_part(self, path) -> tuple[object, PartIndex]:
        """A handle on a committed part and its index; CorruptStoreError if it is damaged."""

    @abc.abstractmethod
    def _block_images(self, handle, block: int) -> np.ndarray:
        """The images (rows, H, W, C) of one block of a part (may be a read-only view)."""

    # ---- opening -------------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        self._parts = PartFiles(self.path, self.suffix)
        self._writer_lock = WriterLock(self.path) if self.mode != "r" else None
        try:
            if self.mode != "r":
                self._parts.create(self.durable)
                self._parts.remove_leftovers()
            self._load()
        except BaseException:
            self._close()
            raise

    def _load(self) -> None:
        self._handles, indexes = [], []
        committed = self._parts.committed()
        for path in committed:
            handle, index = self._open_part(path)
            self._check_part(path, index)
            self._handles.append(handle)
            indexes.append(index)
        self._reset_index(indexes)

    def _check_part(self, path, index: PartIndex) -> None:
        count = len(index.ids)
        if (len(index.labels) != count or len(index.checksums) != count
                or sum(index.block_rows) != count):
            raise CorruptStoreError(f"the part '{path}' has columns of different lengths; "
                                    "it is damaged: restore the store from a copy")

    def _reset_index(self, indexes: list[PartIndex]) -> None:
        def joined(name, dtype):
            columns = [getattr(index, name) for index in indexes]
            return np.concatenate(columns).astype(dtype) if columns else np.zeros(0, dtype)
        self._rows = LatestRows(joined("ids", np.int64))
        self._labels = joined("labels", np.int64)
        self._checksums = joined("checksums", np.uint64)
        # Blocks over all parts, in row order: the part and block each one is.
        self._blocks = [(part, block) for part, index in enumerate(indexes)
                        for block in range(len(index.block_rows))]
        sizes = [rows for index in indexes for rows in index.block_rows]
        self._block_starts = np.cumsum([0] + sizes)[:-1].astype(np.int64)
        self._block_sizes = np.array(sizes, np.int64)

    def _close(self) -> None:
        self._handles = []
        if getattr(self, "_writer_lock", None) is not None:
            self._writer_lock.release()
            self._writer_lock = None

    # ---- writing -------------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        # Held ids were refused by the base class (Backend._refuse_held) before this call.
        checksums = self._checksums_of(ids, labels, images)
        content = self._part_content(images)
        number = len(self._handles)
        path = self._parts.commit(
            lambda target: self._write_part(target, ids, labels, checksums, content),
            number, self.durable)
        # Committed: now this object opens the part like any other.
        handle, index = self._open_part(path)
        self._handles.append(handle)
        start = self._rows.rows_held
        self._rows = self._rows.appended(index.ids)
        self._labels = np.concatenate([self._labels, labels])
        self._checksums = np.concatenate([self._checksums, checksums])
        self._blocks += [(number, block) for block in range(len(index.block_rows))]
        self._block_starts = np.concatenate(
            [self._block_starts, start + np.cumsum([0] + index.block_rows)[:-1]])
        self._block_sizes = np.concatenate([self._block_sizes, index.block_rows])

    def _checksums_of(self, ids, labels, images) -> np.ndarray:
        return image_checksums(ids, labels, images)

    def _part_content(self, images):
        """What ``_write_part`` is handed as the image column's content."""
        return np.ascontiguousarray(images)

    # ---- reading -------------------------------------------------------------------------
    def _images_of_block(self, block: int) -> np.ndarray:
        part, block_in_part = self._blocks[block]
        images = self._block_images(self._handles[part], block_in_part)
        if len(images) != self._block_sizes[block] or images.shape[1:] != self.image_shape:
            raise CorruptStoreError(f"a block of '{self._parts.committed()[part]}' holds "
                                    f"{images.shape} pixels; the store is damaged")
        return images

    def _read_one(self, key):
        row = self._rows.row(key)
        if row is None:
            raise self._missing([key])
        block = int(np.searchsorted(self._block_starts, row, side="right")) - 1
        image = self._images_of_block(block)[row - self._block_starts[block]].copy()
        label = int(self._labels[row])
        if image_checksum(key, label, image) != self._checksums[row]:
            verify_checksums(np.array([key], np.int64), self._labels[[row]], image[None],
                             self._checksums[[row]], self._where())
        return image, label

    def _read_many(self, ids):
        rows, found = self._rows.rows(ids)
        if not found.all():
            raise self._missing(ids[~found])
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        blocks = np.searchsorted(self._block_starts, rows, side="right") - 1
        if np.all(np.diff(rows) == 1):  # a run of rows: copy slices, block by block
            self._copy_run(images, int(rows[0]), int(blocks[0]), int(blocks[-1]))
        else:
            order = np.argsort(blocks, kind="stable")
            bounds = np.flatnonzero(np.diff(blocks[order])) + 1
            for group in np.split(order, bounds):
                block = int(blocks[group[0]])
                local = rows[group] - self._block_starts[block]
                images[group] = self._images_of_block(block)[local]
        labels = self._labels[rows]
        verify_checksums(ids, labels, images, self._checksums[rows], self._where())
        return images, labels

    def _copy_run(self, images, first_row: int, first_block: int, last_block: int) -> None:
        written = 0
        for block in range(first_block, last_block + 1):
            start = max(first_row + written - int(self._block_starts[block]), 0)
            block_images = self._images_of_block(block)
            taken = min(len(block_images) - start, len(images) - written)
            images[written:written + taken] = block_images[start:start + taken]
            written += taken

    def _where(self) -> str:
        return f"the {self.name} store at '{self.path}'"

    def _ids(self):
        return self._rows.sorted_ids

    def _contains_many(self, ids):
        return self._rows.rows(ids)[1]

    def _max_id(self):
        return self._rows.max_id

    def _count(self):
        return len(self._rows)
