"""Reference only: encoded images with no format at all, the bytes in one file per batch.

The encoded-mode counterpart of ``raw``: each ``write_many`` writes every
value's bytes back to back into ``batch-<n>.bytes`` and their boundaries into
``batch-<n>.offsets.npy`` (int64, N + 1: value i is ``bytes[offsets[i]:offsets[i + 1]]``),
beside ``batch-<n>.labels.npy`` and ``batch-<n>.ids.npy`` (int64). Reads map the
bytes file and slice it. What this costs is what moving the bytes costs; the
encoded stores of every format are measured against it. No commit record, no
checksums: never recommended for data you keep.

Layout of a store directory: ``store.json`` (the marker, with ``"encoding"``)
and the four files of each batch.
"""
from __future__ import annotations

import mmap
import os

import numpy as np

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts
from storage.core.row_index import RowIndex


def read_plainly(path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with numpy and open() as the layout above says."""
    store = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".ids.npy"):
            batch = path / name[:-len(".ids.npy")]
            data = (batch.parent / f"{batch.name}.bytes").read_bytes()
            offsets = np.load(f"{batch}.offsets.npy")
            for key, label, start, stop in zip(np.load(f"{batch}.ids.npy"),
                                               np.load(f"{batch}.labels.npy"),
                                               offsets[:-1], offsets[1:]):
                store[int(key)] = (data[start:stop], int(label))
    return store


class RawBlobBackend(Backend):
    name = "raw-blob"
    # A reference: batches are never rewritten, and it holds encoded images only.
    capabilities = Capabilities(overwrite=False, arrays=False, encodings=("jpeg", "png"),
                                max_value_bytes=2**62)
    facts = FormatFacts(plain_reader=read_plainly)

    def _open(self, create: bool) -> None:
        names = sorted(name[:-len(".ids.npy")] for name in os.listdir(self.path)
                       if name.endswith(".ids.npy"))
        self._batches = [self._load(name) for name in names]
        self._reindex()

    def _load(self, name: str):
        with open(self.path / f"{name}.bytes", "rb") as file:
            data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return (data, np.load(self.path / f"{name}.offsets.npy"),
                np.load(self.path / f"{name}.labels.npy"), np.load(self.path / f"{name}.ids.npy"))

    def _reindex(self) -> None:
        ids = [batch[3] for batch in self._batches]
        self._index = RowIndex(np.concatenate(ids) if ids else np.zeros(0, np.int64))
        self._row_starts = np.cumsum([0] + [len(batch_ids) for batch_ids in ids])

    def _close(self) -> None:
        for data, *_ in self._batches:
            data.close()
        self._batches = []

    def _write_many(self, ids, datas, labels, overwrite):
        name = f"batch-{len(self._batches):06d}"
        offsets = np.zeros(len(datas) + 1, np.int64)
        np.cumsum([len(data) for data in datas], out=offsets[1:])
        with open(self.path / f"{name}.bytes", "wb") as file:
            file.write(b"".join(datas))
        np.save(self.path / f"{name}.offsets.npy", offsets)
        np.save(self.path / f"{name}.labels.npy", labels)
        np.save(self.path / f"{name}.ids.npy", ids)
        self._batches.append(self._load(name))
        self._reindex()

    def _read_many(self, ids):
        rows, found = self._index.rows(ids)
        if not found.all():
            raise self._missing(ids[~found])
        batch_of = np.searchsorted(self._row_starts, rows, side="right") - 1
        local = rows - self._row_starts[batch_of]
        datas, labels = [], np.empty(len(ids), np.int64)
        for i, (batch, row) in enumerate(zip(batch_of.tolist(), local.tolist())):
            data, offsets, batch_labels, _ = self._batches[batch]
            datas.append(data[offsets[row]:offsets[row + 1]])
            labels[i] = batch_labels[row]
        return datas, labels

    def _ids(self):
        return self._index.sorted_ids

    def _count(self):
        return len(self._index)

    def _contains_many(self, ids):
        return self._index.rows(ids)[1]

    def _max_id(self):
        return self._index.max_id
