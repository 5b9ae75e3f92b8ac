"""HDF5: one resizable images dataset in native uint8, labels and ids beside it.

Layout of a store directory::

    store.json    {"format": "image-store", "backend": "hdf5", "image_shape": [H, W, C], ...}
    images.h5
      /images     uint8 (N, H, W, C), chunks of whole images (about 192 KiB), resizable
      /labels     int64 (N,)
      /ids        int64 (N,): row i holds the id of images[i] and labels[i]

``/ids`` is the commit record: its length is the number of committed images.
A batch is written to ``/images`` and ``/labels`` first and ``/ids`` grows last,
so rows past its length are leftovers of an interrupted write, ignored and
trimmed when the store is next opened for writing. Overwrites rewrite rows in
place. Plain h5py reads it: ``h5py.File(".../images.h5")["images"][:100]``.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from storage.base import Backend
from storage.errors import CorruptStoreError
from storage.row_index import RowIndex

FILE = "images.h5"
_CHUNK_BYTES = 192 * 1024
_SPAN_FACTOR = 4  # read a covering range when it is at most this many times the rows asked


class Hdf5Backend(Backend):
    name = "hdf5"

    def _open(self, create: bool) -> None:
        file_path = self.path / FILE
        try:
            self._file = h5py.File(file_path, "r" if self.mode == "r" else "a")
        except OSError as error:
            raise CorruptStoreError(f"cannot open '{file_path}' as HDF5: {error}") from error
        self._images = None  # looked up once: h5py's name lookup costs more than a small read
        self._one_image_space = None
        self._load_index()

    def _load_index(self) -> None:
        if "ids" not in self._file:
            self._index, self._labels = RowIndex(np.zeros(0, np.int64)), np.zeros(0, np.int64)
            return
        try:
            ids = self._file["ids"][:]
            count = len(ids)
            labels = self._file["labels"][:count]
            stored_rows = self._file["images"].shape[0]
        except (KeyError, OSError) as error:
            raise CorruptStoreError(f"the HDF5 store at '{self.path}' is damaged: {error}") from error
        if len(labels) < count or stored_rows < count:
            raise CorruptStoreError(
                f"the HDF5 store at '{self.path}' has {count} ids but only {len(labels)} labels "
                f"and {stored_rows} images; it is damaged")
        if self.mode != "r" and (len(labels) > count or stored_rows > count):
            self._file["labels"].resize(count, axis=0)  # an interrupted batch: drop it
            self._file["images"].resize(count, axis=0)
        self._index, self._labels = RowIndex(ids), labels.astype(np.int64)

    def _close(self) -> None:
        self._file.close()

    # ---- writing -------------------------------------------------------------------------
    def _create_datasets(self, shape) -> None:
        chunk_rows = max(1, _CHUNK_BYTES // int(np.prod(shape)))
        self._file.create_dataset("images", (0, *shape), np.uint8, maxshape=(None, *shape),
                                  chunks=(chunk_rows, *shape))
        for name in ("labels", "ids"):
            self._file.create_dataset(name, (0,), np.int64, maxshape=(None,), chunks=(16384,))

    def _write_many(self, ids, images, labels, overwrite) -> None:
        if "images" not in self._file:
            self._create_datasets(images.shape[1:])
        rows, found = self._index.rows(ids)
        if found.any():
            if not overwrite:
                self._raise_duplicates(ids[found])
            order = np.argsort(rows[found])  # h5py writes lists of rows in increasing order
            self._file["images"][rows[found][order]] = images[found][order]
            self._file["labels"][rows[found][order]] = labels[found][order]
            self._labels[rows[found]] = labels[found]
        new = ~found
        if new.any():
            if found.any():  # boolean indexing copies: only pay for it when ids were mixed
                images, labels, ids = images[new], labels[new], ids[new]
            start, stop = len(self._index), len(self._index) + len(ids)
            for name, values in (("images", images), ("labels", labels),
                                 ("ids", ids)):  # ids last: the commit record
                dataset = self._file[name]
                dataset.resize(stop, axis=0)
                dataset[start:stop] = values
            self._index = self._index.appended(ids)
            self._labels = np.concatenate([self._labels, labels])
        self._file.flush()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.id.get_vfd_handle())  # flush() only hands the data to the OS

    # ---- reading -------------------------------------------------------------------------
    def _read_one(self, key):
        row = self._index.row(key)
        if row is None:
            self._raise_missing([key])
        # The low-level read skips h5py's slicing machinery, several times the read itself.
        dataset = self._file["images"] if self._images is None else self._images
        self._images = dataset
        if self._one_image_space is None:
            self._one_image_space = h5py.h5s.create_simple((1, *self.image_shape))
        file_space = dataset.id.get_space()
        file_space.select_hyperslab((row, 0, 0, 0), (1, *self.image_shape))
        image = np.empty((1, *self.image_shape), np.uint8)
        dataset.id.read(self._one_image_space, file_space, image)
        return image[0], int(self._labels[row])

    def _read_many(self, ids):
        rows, found = self._index.rows(ids)
        if not found.all():
            self._raise_missing(ids[~found])
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        dataset = self._file["images"]
        first, last = int(rows.min()), int(rows.max())
        if last - first == len(rows) - 1 and np.all(np.diff(rows) == 1):
            dataset.read_direct(images, np.s_[first:last + 1])
        elif last - first + 1 <= _SPAN_FACTOR * len(rows):
            span = np.empty((last - first + 1, *self.image_shape), np.uint8)
            dataset.read_direct(span, np.s_[first:last + 1])
            np.take(span, rows - first, axis=0, out=images)
        else:
            for i, row in enumerate(rows.tolist()):
                dataset.read_direct(images, np.s_[row], np.s_[i])
        return images, self._labels[rows]

    def _ids(self):
        return self._index.sorted_ids

    def _count(self):
        return len(self._index)
