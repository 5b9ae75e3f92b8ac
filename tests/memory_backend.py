"""A toy format, registered for the test session only: the proof that a format is one
module and one registry line. It implements nothing but the required hooks.

Layout: ``store.npz`` (``np.savez``: ``ids``, ``images``, ``labels``), rewritten
whole and renamed into place at every commit; between commits the store lives in
memory. The README's "Adding a format" section walks through it.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from storage.core.backend import Backend
from storage.core.facts import FormatFacts
from storage.errors import CorruptStoreError
from storage.registry import BACKENDS, BackendEntry

FILE = "store.npz"


def read_plainly(path) -> dict:
    """id -> (image, label), with numpy alone."""
    with np.load(path / FILE, allow_pickle=False) as saved:
        return {key: (image, int(label)) for key, image, label
                in zip(saved["ids"].tolist(), saved["images"], saved["labels"])}


class MemoryBackend(Backend):
    name = "memory"
    # A commit is one rename, so a batch is all or nothing and an overwrite never tears.
    # Each object holds its own copy in memory and is not built for concurrent use, so
    # the concurrency tests skip it.
    facts = FormatFacts(plain_reader=read_plainly, atomic_batches=True, torn_overwrites=False,
                        rolls_back_when_damaged=False, shared_between_objects=False)

    def _open(self, create: bool) -> None:
        self._images, self._labels = {}, {}
        file = self.path / FILE
        if create or not file.exists() and self._read_marker_shape() is None:
            return  # new, or its creation was cut short: empty
        try:
            with np.load(file, allow_pickle=False) as saved:  # never runs a pickle
                ids, images, labels = saved["ids"], saved["images"], saved["labels"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise CorruptStoreError(f"cannot read '{file}': {error}") from error
        self._images = dict(zip(ids.tolist(), images))
        self._labels = dict(zip(ids.tolist(), labels.tolist()))

    def _close(self) -> None:
        self._images, self._labels = {}, {}

    def _write_many(self, ids, images, labels, overwrite) -> None:
        new_images = {**self._images, **dict(zip(ids.tolist(), images.copy()))}
        new_labels = {**self._labels, **dict(zip(ids.tolist(), labels.tolist()))}
        temporary = self.path / (FILE + ".new.npz")
        np.savez(temporary, ids=np.array(list(new_images), np.int64),
                 images=np.stack(list(new_images.values())),
                 labels=np.array(list(new_labels.values()), np.int64))
        os.replace(temporary, self.path / FILE)  # the commit
        self._images, self._labels = new_images, new_labels

    def _read_many(self, ids):
        keys = ids.tolist()  # an id not held raises KeyError; the base class names it
        return (np.stack([self._images[key] for key in keys]),
                np.array([self._labels[key] for key in keys], np.int64))

    def _ids(self):
        return np.array(sorted(self._images), np.int64)


def register() -> None:
    """Add the toy to the registry of this process (the test session and its children)."""
    BACKENDS.setdefault("memory", BackendEntry("memory", f"{__name__}:MemoryBackend"))
