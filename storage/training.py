"""A map-style data set over a store, for ``torch.utils.data.DataLoader``; torch stays optional.

DataLoader needs ``len()``, ``[position]`` and, to fetch a batch in one call,
``__getitems__(positions)``, which here is one ``read_many``. The data set is
built for worker processes:

- its constructor opens nothing; the store opens on first use, in the process
  that uses it;
- a handle inherited across fork is dropped, never used, and the store opened
  afresh (an LMDB environment shared across fork runs out of reader slots);
- pickling carries the path, backend, options and transforms only, so it travels
  to spawn and forkserver workers;
- the ids are one int64 numpy array: reading a Python list of ints in a forked
  worker touches every object's reference count and copies the pages it sits on.

>>> loader = torch.utils.data.DataLoader(StoreDataset("cifar.lmdb"), batch_size=256,
...                                      shuffle=True, num_workers=2)
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from storage import open_store


class StoreDataset:
    """Samples ``(image, label)`` of the store at ``path``, position ``i`` holding ``ids[i]``.

    ``ids``: the ids to serve, in order (default: every id of the store, ascending).
    ``transform`` maps an image (H, W, C) uint8 array, ``target_transform`` a label;
    both must pickle (module-level functions) to reach spawn workers.
    ``options`` go to ``open_store`` (``readahead=False`` for LMDB, for instance).
    """

    def __init__(self, path, backend: str | None = None, *, ids=None,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 **options):
        self.path = os.fspath(path)
        self.backend = backend
        self.options = options
        self.transform = transform
        self.target_transform = target_transform
        self._given_ids = None if ids is None else np.array(ids, dtype=np.int64).reshape(-1)
        self._ids = self._given_ids
        self._store = None
        self._store_pid: int | None = None

    @property
    def ids(self) -> np.ndarray:
        """The id at each position, int64."""
        if self._ids is None:
            self._ids = self._open().ids()
        return self._ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, position):
        image, label = self._open().read_one(int(self.ids[_position(position)]))
        return self._sample(image, label)

    def __getitems__(self, positions) -> list:
        """The samples at ``positions`` through one read_many (what DataLoader calls)."""
        images, labels = self.read_batch(positions)
        return [self._sample(image, label) for image, label in zip(images, labels.tolist())]

    def read_batch(self, positions) -> tuple[np.ndarray, np.ndarray]:
        """Images (B, H, W, C) and labels (B,) at ``positions``, untransformed."""
        rows = np.asarray(positions, dtype=np.intp).reshape(-1)
        return self._open().read_many(self.ids[rows])

    def close(self) -> None:
        """Close this process's handle; the next read opens the store again."""
        if self._store is not None and self._store_pid == os.getpid():
            self._store.close()
        self._store, self._store_pid = None, None

    def __getstate__(self) -> dict:
        return {"path": self.path, "backend": self.backend, "options": self.options,
                "ids": self._given_ids, "transform": self.transform,
                "target_transform": self.target_transform}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["backend"], ids=state["ids"],
                      transform=state["transform"], target_transform=state["target_transform"],
                      **state["options"])

    def __repr__(self) -> str:
        return f"<StoreDataset '{self.path}' backend={self.backend!r}>"

    def _open(self):
        if self._store_pid != os.getpid():
            # First use here, or the parent's handle came across fork: drop it unused
            # (closing it from here could disturb the parent's) and open our own.
            self._store = open_store(self.path, self.backend, mode="r", **self.options)
            self._store_pid = os.getpid()
        return self._store

    def _sample(self, image: np.ndarray, label: int):
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


def _position(position) -> int:
    if isinstance(position, (bool, np.bool_)) or not isinstance(position, (int, np.integer)):
        raise TypeError(f"positions are integers, got {position!r}")
    return int(position)
