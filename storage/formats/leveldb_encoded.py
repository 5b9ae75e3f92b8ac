"""LevelDB holding encoded images: one value per image, its bytes as given.

In the same ``leveldb/`` database as a store of arrays, with ``"encoding"`` in
``store.json``::

    b"meta:count"                  uint64 LE: images held
    b"image:" + (id as 8-byte big-endian)     (key order is id order)
                                   offset 0   b"IMGE"
                                   offset 4   CRC-32 (zlib's) of the id's 8 bytes followed by
                                              every value byte from offset 8 on, uint32 LE
                                   offset 8   label, int64 LE
                                   offset 16  the encoded image, byte for byte

The value is LMDB's encoded value (``storage.formats.lmdb.encoded``). Encoded
images differ in length, so each has a key of its own rather than a share of a
chunk. Every read checks the CRC, which also binds the value to its id: damage
raises CorruptStoreError, never another image. Commits (one ``WriteBatch`` per
``write_many``, ``sync=True`` when durable), recovery and the one-process rule
are ``storage.formats.leveldb``'s. Plain plyvel reads it:
``plyvel.DB(".../leveldb").get(b"image:" + (7).to_bytes(8, "big"))[16:]``.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
import plyvel

from storage.core.capabilities import Capabilities
from storage.formats.leveldb import _META, _U64, DIRECTORY, LeveldbBackend
from storage.formats.lmdb.encoded import pack_value, parse_value

_IMAGE = b"image:"
_KEY = struct.Struct(">Q")
_HEADER_BYTES = 16


def read_plainly(path: Path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with plyvel and zlib alone."""
    db = plyvel.DB(str(path / DIRECTORY))
    try:
        store = {}
        for key, value in db.iterator(prefix=_IMAGE):
            magic, checksum, label = struct.unpack_from("<4sIq", value)
            packed = key[len(_IMAGE):]
            if magic != b"IMGE" or zlib.crc32(value[8:], zlib.crc32(packed)) != checksum:
                raise ValueError(f"the value of id {packed.hex()} fails its magic or CRC")
            store[_KEY.unpack(packed)[0]] = (value[16:], label)
        return store
    finally:
        db.close()


class EncodedLeveldbBackend(LeveldbBackend):
    """``LeveldbBackend`` with ``encoding=`` is one of these."""

    capabilities = Capabilities(processes="one", encodings=("jpeg", "png"), arrays=False,
                                max_value_bytes=2**31 - 1 - _HEADER_BYTES)
    # The crash tests kill it where its commit differs from the array layout's, and at
    # two of the ~15 writes a small write session makes to its log.
    facts = dataclasses.replace(LeveldbBackend.facts, plain_reader=read_plainly,
                                crash_points=(("leveldb-before-batch", 3),),
                                syscall_kills=(2, 10))
    encoded_variant = None

    def _write_many(self, ids, datas, labels, overwrite) -> None:
        with self._translated(sum(map(len, datas))):
            db = self._db()
            batch = db.write_batch(sync=self.durable)
            added = len(ids)
            for key, data, label in zip(ids.tolist(), datas, labels.tolist()):
                packed = _KEY.pack(key)
                if overwrite and db.get(_IMAGE + packed) is not None:
                    added -= 1
                batch.put(_IMAGE + packed, pack_value(packed, label, data))
            batch.put(_META + b"count", _U64.pack(self._count() + added))
            self._commit(batch)

    def _read_one(self, key):
        datas, labels = self._read_many(np.array([key], np.int64))
        return datas[0], int(labels[0])

    def _read_many(self, ids):
        with self._translated():
            db = self._db()
            if db is None:
                raise self._missing(ids)
            with db.snapshot() as snapshot:
                values = self._values(snapshot, ids)
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            raise self._missing(ids[missing])
        datas, labels = [], np.empty(len(ids), np.int64)
        store = f"the LevelDB store at '{self.path}'"  # once: a Path's str costs per value
        for i, (key, value) in enumerate(zip(ids.tolist(), values)):
            data, labels[i] = parse_value(_KEY.pack(key), value,
                                          f"the value of id {key} in {store}")
            datas.append(data)
        return datas, labels

    def _values(self, snapshot, ids: np.ndarray) -> list:
        """The value of each id (None where none is held), from one snapshot: a run of
        nearby ids through one iterator, scattered ids one get each."""
        low, high = (int(ids.min()), int(ids.max())) if len(ids) else (0, 0)
        if len(ids) <= 8 or high - low >= 2 * len(ids):
            return [snapshot.get(_IMAGE + _KEY.pack(key)) for key in ids.tolist()]
        found = {}
        for key, value in snapshot.iterator(start=_IMAGE + _KEY.pack(low),
                                            stop=_IMAGE + _KEY.pack(high + 1)):
            found[key] = value
        return [found.get(_IMAGE + _KEY.pack(key)) for key in ids.tolist()]

    def _ids(self):
        with self._translated():
            db = self._db()
            if db is None:
                return np.zeros(0, np.int64)
            keys = b"".join(key[len(_IMAGE):] for key in
                            db.iterator(prefix=_IMAGE, include_value=False))
        return np.frombuffer(keys, ">u8").astype(np.int64)

    def _contains_many(self, ids):
        with self._translated():
            db = self._db()
            if db is None:
                return np.zeros(len(ids), bool)
            return np.array([db.get(_IMAGE + _KEY.pack(key)) is not None
                             for key in ids.tolist()], bool)

    def _max_id(self):
        with self._translated():
            db = self._db()
            if db is None:
                return None
            with db.iterator(prefix=_IMAGE, reverse=True, include_value=False) as last:
                key = next(last, None)
        return None if key is None else _KEY.unpack(key[len(_IMAGE):])[0]
