"""Read a sharded store as one store: ids map to shards, shards open lazily per process.

Writing goes through ``python -m storage convert`` (``storage.convert``), which builds and
commits each shard atomically; this backend is read-only and says so on any write. Shards
of encoded images make an encoded sharded store (its ``store.json`` and index record the
encoding); reads then return each image's bytes, as the shards do.
"""
from __future__ import annotations

import numpy as np

from storage import Backend, Capabilities
from storage.core.checksums import PendingChecks
from storage.errors import CorruptStoreError, KeyNotFoundError, ReadOnlyError, StoreError
from storage.sharded.index import ShardIndex, read_index
from storage.registry import backend_class

_CHECKED_AT_ONCE = 512  # rows verified in one product: 1.5 MiB of CIFAR, still in cache


class ShardedBackend(Backend):
    name = "sharded"
    capabilities = Capabilities(encodings=("jpeg", "png"))  # those of its shards' format

    @classmethod
    def prepare(cls, path, image_shape, encoding: str | None = None) -> None:
        """Make ``path`` a sharded store for images of ``image_shape`` (or encoded images of
        ``encoding``), or check that it is one.

        Shards and the index come later (``storage.convert``).
        """
        store = cls(path, "a", encoding=encoding)
        try:
            if encoding is None:
                store._accept_shape(image_shape)
        finally:
            store.close()

    def _open(self, create: bool) -> None:
        self._shards: dict[int, Backend] = {}
        self._index: ShardIndex | None = None
        if create or self.mode != "r":  # being built: reads wait for the index
            return
        self._index = read_index(self.path)
        if self._index.shard_format == self.name:
            raise CorruptStoreError(f"'{self.path}/index.json' names 'sharded' as its shard format")
        backend_class(self._index.shard_format)  # an unknown format fails here, typed
        if self._index.encoding != self.encoding:
            raise CorruptStoreError(
                f"'{self.path}/index.json' lists shards of "
                f"{self._index.encoding or 'pixel arrays'}, its store.json "
                f"{self.encoding or 'pixel arrays'}; the store is damaged: convert it again")
        self._starts = np.array([shard.start for shard in self._index.shards], np.int64)

    @property
    def index(self) -> ShardIndex:
        """The committed index: shard format, count, source, classes and every shard."""
        self._check_usable()
        return self._index

    def _close(self) -> None:
        shards, self._shards = self._shards, {}
        for store in shards.values():
            store.close()

    def _after_fork(self) -> None:
        # Each open shard reopens its own handles on first use in the child.
        pass

    def _shard(self, number: int) -> Backend:
        store = self._shards.get(number)
        if store is None:
            record = self._index.shards[number]
            try:
                store = backend_class(self._index.shard_format)(self.path / record.name, "r")
            except StoreError as error:
                raise CorruptStoreError(
                    f"shard '{record.name}' of the sharded store at '{self.path}' cannot be "
                    f"opened ({error}); restore it, or convert the source again") from error
            self._shards[number] = store
        return store

    # ---- reads --------------------------------------------------------------------------
    def _read_one(self, key: int):
        self._require_index()
        if key >= self._index.count:
            self._raise_missing([key])
        number = int(np.searchsorted(self._starts, key, side="right")) - 1
        return self._shard(number).read_one(key)

    def _read_many(self, ids: np.ndarray):
        self._require_index()
        missing = ids[ids >= self._index.count]
        if len(missing):
            self._raise_missing(missing)
        first, last = np.searchsorted(self._starts, ids[[0, -1]], side="right") - 1
        if first == last and ids.min() >= self._starts[first] and (
                first + 1 == len(self._starts) or ids.max() < self._starts[first + 1]):
            return self._shard(int(first)).read_many(ids)  # one shard: no copy
        # Sorted once, then one contiguous run of ids per shard: each shard reads in id
        # order, straight into the rows that asked for them; their checksums are verified
        # together at the end.
        ordered, order = ids, None
        if np.any(ids[1:] < ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ordered = ids[order]
        bounds = np.searchsorted(ordered, self._starts).tolist() + [len(ids)]
        if self.encoding:
            return self._read_encoded(ordered, order, bounds)
        rows = order if order is not None else np.arange(len(ids))
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        labels = np.empty(len(ids), np.int64)
        checks = PendingChecks(images, _CHECKED_AT_ONCE)
        for number, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:])):
            if begin < end:
                part = rows[begin:end]
                labels[part] = self._shard(number)._read_into(ordered[begin:end], images, part,
                                                              checks)
        checks.verify()
        return images, labels

    def _read_encoded(self, ordered, order, bounds):
        datas: list[bytes] = []
        labels = np.empty(len(ordered), np.int64)
        for number, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:])):
            if begin < end:
                read, labels[begin:end] = self._shard(number).read_many(ordered[begin:end])
                datas += read
        if order is None:
            return datas, labels
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return [datas[row] for row in back.tolist()], labels[back]

    def _ids(self) -> np.ndarray:
        return np.arange(self._index.count if self._index else 0, dtype=np.int64)

    def _count(self) -> int:
        return self._index.count if self._index else 0

    def _raise_missing(self, missing) -> None:
        shown = ", ".join(str(int(key)) for key in list(missing)[:5])
        raise KeyNotFoundError(f"id(s) {shown} not in the sharded store at '{self.path}', which "
                               f"holds ids 0..{self._index.count - 1}")

    def _require_index(self) -> None:
        if self._index is None:
            self._index = read_index(self.path)  # raises IncompleteStoreError

    # ---- writes: refused ------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        self._refuse_write()

    def _write_one(self, key, image, label, overwrite) -> None:
        self._refuse_write()

    def _refuse_write(self):
        raise ReadOnlyError(
            f"the sharded store at '{self.path}' is read-only: write it with `python -m storage "
            "convert SRC DST --shards K`, or write to one of its shards' formats directly")
