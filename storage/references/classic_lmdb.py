"""Reference only: the classic LMDB code, one pickled Python object per image.

Reproduces the widely copied baseline from the "three ways of storing lots of
images in Python" comparison: keys ``f"{i:08}"``, one ``pickle.dumps`` per
image, ``map_size`` fixed at 10x the data (a store that outgrows it fails),
read back with one ``txn.get`` + ``pickle.loads`` per image. Its pickles are
only ever read back from stores this module wrote itself; never recommended.

Layout of a store directory: ``store.json`` (the marker) and the LMDB
environment (``data.mdb``, ``lock.mdb``), main database only.
"""
from __future__ import annotations

import io
import pickle

import lmdb
import numpy as np

from storage.core.backend import Backend
from storage.errors import StorageFullError


class CIFAR_Image:  # noqa: N801 - the classic code's name, kept so its pickles match
    def __init__(self, image, label):
        self.channels = image.shape[2]
        self.size = image.shape[:2]
        self.image = image.tobytes()
        self.label = label

    def get_image(self):
        image = np.frombuffer(self.image, dtype=np.uint8)
        return image.reshape(*self.size, self.channels)


class _ClassicUnpickler(pickle.Unpickler):
    """Even a reference reads nothing but the one class it writes."""

    def find_class(self, module, name):
        # Stores written before the module moved name its old path.
        if name == "CIFAR_Image" and module in (__name__, "storage.classic_lmdb"):
            return CIFAR_Image
        raise pickle.UnpicklingError(f"classic-lmdb stores hold only CIFAR_Image, not {module}.{name}")


class ClassicLmdbBackend(Backend):
    name = "classic-lmdb"

    def _open(self, create: bool) -> None:
        self._env = None  # the classic code opens the environment per store call

    def _close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def _environment(self, map_size: int = 0, readonly: bool = False):
        if self._env is None:
            self._env = lmdb.open(str(self.path), map_size=max(map_size, 10 * 1024**2),
                                  readonly=readonly and self.mode == "r")
        return self._env

    def _write_many(self, ids, images, labels, overwrite):
        # The classic code opens the environment per call, sizing the map at 10x the
        # images it is about to store. Its single-image code would fail once a store held
        # more than that; the data already stored is added so the reference keeps working.
        self._close()
        stored = (self.path / "data.mdb").stat().st_size if (self.path / "data.mdb").exists() else 0
        env = self._environment(map_size=stored + len(images) * images[0].nbytes * 10)
        try:
            with env.begin(write=True) as txn:
                for key, image, label in zip(ids.tolist(), images, labels.tolist()):
                    value = pickle.dumps(CIFAR_Image(image, label))
                    txn.put(f"{key:08}".encode("ascii"), value)
        except lmdb.MapFullError as error:
            raise StorageFullError(f"classic-lmdb's fixed map_size is full: {error}") from error

    def _read_one(self, key):
        with self._environment(readonly=True).begin() as txn:
            data = txn.get(f"{key:08}".encode("ascii"))
            if data is None:
                raise self._missing([key])
            cifar_image = _ClassicUnpickler(io.BytesIO(data)).load()
            return cifar_image.get_image(), int(cifar_image.label)

    def _read_many(self, ids):
        images, labels = [], []
        with self._environment(readonly=True).begin() as txn:
            for key in ids.tolist():
                data = txn.get(f"{key:08}".encode("ascii"))
                if data is None:
                    raise self._missing([key])
                cifar_image = _ClassicUnpickler(io.BytesIO(data)).load()
                images.append(cifar_image.get_image())
                labels.append(cifar_image.label)
        return np.asarray(images), np.asarray(labels, np.int64)

    def _contains_many(self, ids):
        with self._environment(readonly=True).begin() as txn:
            return np.array([txn.get(f"{key:08}".encode("ascii")) is not None
                             for key in ids.tolist()], dtype=bool)

    def _ids(self):
        with self._environment(readonly=True).begin() as txn:
            keys = [int(key) for key in txn.cursor().iternext(keys=True, values=False)]
        return np.array(keys, dtype=np.int64)

