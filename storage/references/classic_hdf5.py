"""Reference only: the classic HDF5 code, one big-endian dataset written in one call.

Reproduces the widely copied baseline from the "three ways of storing lots of
images in Python" comparison: ``create_dataset(..., h5py.h5t.STD_U8BE,
data=images)`` and labels as ``STD_U8BE`` too (so labels must be 0..255), read
back with ``np.array(dataset).astype("uint8")``, which converts every byte from
big-endian in HDF5's type-conversion path. Never recommended.

Layout of a store directory: ``store.json`` (the marker), ``<id>.h5`` per image
stored singly (datasets ``image``, ``meta``) and ``batch-<first id>.h5`` per
batch stored many (datasets ``images``, ``meta``, and ``ids``).
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.errors import LabelError


class ClassicHdf5Backend(Backend):
    name = "classic-hdf5"
    capabilities = Capabilities(overwrite=False)  # classic files are not rewritten in place

    def _open(self, create: bool) -> None:
        self._batches: dict[int, tuple[str, int]] | None = None

    def _close(self) -> None:
        pass

    def _write_one(self, key, image, label, overwrite):
        _check_u8(np.array([label]))
        file = h5py.File(self.path / f"{key}.h5", "w")
        file.create_dataset("image", np.shape(image), h5py.h5t.STD_U8BE, data=image)
        file.create_dataset("meta", np.shape(label), h5py.h5t.STD_U8BE, data=label)
        file.close()

    def _write_many(self, ids, images, labels, overwrite):
        _check_u8(labels)
        file = h5py.File(self.path / f"batch-{int(ids[0])}.h5", "w")
        file.create_dataset("images", np.shape(images), h5py.h5t.STD_U8BE, data=images)
        file.create_dataset("meta", np.shape(labels), h5py.h5t.STD_U8BE, data=labels)
        file.create_dataset("ids", data=ids)
        file.close()
        self._batches = None

    def _read_one(self, key):
        single = self.path / f"{key}.h5"
        if single.exists():
            with h5py.File(single, "r") as file:
                image = np.array(file["/image"]).astype("uint8")
                return image, int(np.array(file["/meta"]).astype("uint8"))
        name, row = self._locate(key)
        with h5py.File(self.path / name, "r") as file:
            return (np.array(file["/images"][row]).astype("uint8"),
                    int(np.array(file["/meta"][row]).astype("uint8")))

    def _read_many(self, ids):
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        labels = np.empty(len(ids), np.int64)
        by_batch: dict[str, list[tuple[int, int]]] = {}
        for position, key in enumerate(ids.tolist()):
            if (self.path / f"{key}.h5").exists():
                images[position], labels[position] = self._read_one(key)
            else:
                name, row = self._locate(key)
                by_batch.setdefault(name, []).append((position, row))
        for name, wanted in by_batch.items():
            with h5py.File(self.path / name, "r") as file:
                # The classic read: the whole dataset, converted from big-endian.
                batch_images = np.array(file["/images"]).astype("uint8")
                batch_labels = np.array(file["/meta"]).astype("uint8")
            positions, rows = np.array(wanted).T
            images[positions], labels[positions] = batch_images[rows], batch_labels[rows]
        return images, labels

    def _locate(self, key: int) -> tuple[str, int]:
        try:
            return self._batch_index()[key]
        except KeyError:
            raise self._missing([key]) from None

    def _batch_index(self) -> dict[int, tuple[str, int]]:
        """Which batch file and row holds each id stored many at a time."""
        if self._batches is None:
            self._batches = {}
            for name in sorted(os.listdir(self.path)):
                if name.startswith("batch-") and name.endswith(".h5"):
                    with h5py.File(self.path / name, "r") as file:
                        for row, batch_key in enumerate(file["ids"][:].tolist()):
                            self._batches[batch_key] = (name, row)
        return self._batches

    def _contains_many(self, ids):
        return np.array([(self.path / f"{key}.h5").exists() or key in self._batch_index()
                         for key in ids.tolist()], dtype=bool)

    def _ids(self):
        keys = [int(name[:-3]) for name in os.listdir(self.path)
                if name.endswith(".h5") and name[:-3].isdigit()]
        return np.array(sorted([*keys, *self._batch_index()]), dtype=np.int64)


def _check_u8(labels):
    if len(labels) and (labels.min() < 0 or labels.max() > 255):
        raise LabelError("classic-hdf5 stores labels as STD_U8BE: they must be in 0..255")
