"""Reference only: the hardware limit, the same pixel bytes with no format at all.

Each ``write_many`` is one ``.npy`` file written by ``np.save``; reads map it
with ``np.load(mmap_mode="r")`` and copy the rows asked for into a fresh array.
What this costs is what moving the bytes costs; every other backend is
measured against it. It has no commit record and no checksums: never
recommended for data you keep.

Layout of a store directory: ``store.json`` (the marker) and per batch
``batch-<n>.images.npy`` (N, H, W, C) uint8, ``batch-<n>.labels.npy`` int64 and
``batch-<n>.ids.npy`` int64.
"""
from __future__ import annotations

import os

import numpy as np

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.row_index import RowIndex


class RawBackend(Backend):
    name = "raw"
    capabilities = Capabilities(overwrite=False)  # a reference: batches are never rewritten

    def _open(self, create: bool) -> None:
        names = sorted(name[:-len(".ids.npy")] for name in os.listdir(self.path)
                       if name.endswith(".ids.npy"))
        self._batches = [(np.load(self.path / f"{name}.images.npy", mmap_mode="r"),
                          np.load(self.path / f"{name}.labels.npy"),
                          np.load(self.path / f"{name}.ids.npy")) for name in names]
        self._reindex()

    def _reindex(self) -> None:
        ids = [batch_ids for _, _, batch_ids in self._batches]
        self._index = RowIndex(np.concatenate(ids) if ids else np.zeros(0, np.int64))
        self._row_starts = np.cumsum([0] + [len(batch_ids) for batch_ids in ids])

    def _close(self) -> None:
        self._batches = []

    def _write_many(self, ids, images, labels, overwrite):
        name = f"batch-{len(self._batches):06d}"
        np.save(self.path / f"{name}.images.npy", images)
        np.save(self.path / f"{name}.labels.npy", labels)
        np.save(self.path / f"{name}.ids.npy", ids)
        self._batches.append((np.load(self.path / f"{name}.images.npy", mmap_mode="r"),
                              labels, ids))
        self._reindex()

    def _read_many(self, ids):
        rows, found = self._index.rows(ids)
        if not found.all():
            raise self._missing(ids[~found])
        if len(self._batches) == 1 and self._index.dense and np.all(np.diff(rows) == 1):
            mapped, labels, _ = self._batches[0]
            first = int(rows[0])
            return np.array(mapped[first:first + len(rows)]), labels[rows]
        batch_of = np.searchsorted(self._row_starts, rows, side="right") - 1
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        labels = np.empty(len(ids), np.int64)
        for batch in np.unique(batch_of):
            mine = batch_of == batch
            mapped, batch_labels, _ = self._batches[batch]
            local = rows[mine] - self._row_starts[batch]
            images[mine], labels[mine] = mapped[local], batch_labels[local]
        return images, labels

    def _ids(self):
        return self._index.sorted_ids

    def _count(self):
        return len(self._index)

    def _contains_many(self, ids):
        return self._index.rows(ids)[1]

    def _max_id(self):
        return self._index.max_id
