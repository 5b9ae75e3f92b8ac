"""LMDB's layout for encoded images: one value per image, its bytes as given.

In the same environment as an array store (``meta`` and ``chunks`` databases,
``data.mdb``), with ``"encoding"`` in ``store.json``:

    b"chunks"   key: the id as 8-byte big-endian (key order is id order)
                value:
                  offset 0   b"IMGE"
                  offset 4   CRC-32 (zlib's) of the key's 8 bytes followed by every
                             value byte from offset 8 on, uint32 LE
                  offset 8   label, int64 LE
                  offset 16  the encoded image, byte for byte
    b"meta"     unused (kept so that both layouts open the same way)

Encoded images differ in length, so each has a key of its own rather than a
share of a fixed-size chunk. Every read checks the CRC, which also binds the
value to its key: damaged bytes raise CorruptStoreError, never come back as
another image. Plain py-lmdb reads it: ``lmdb.open(path, max_dbs=2,
readonly=True)``, ``env.open_db(b"chunks")``, then slice each value as above.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

import lmdb
import numpy as np
from imagecodecs import zlibng_crc32 as crc32  # same CRC-32 as zlib.crc32, far faster

from storage.core.capabilities import Capabilities
from storage.formats.lmdb.backend import LmdbBackend
from storage.errors import CorruptStoreError

MAGIC = b"IMGE"
_HEADER = struct.Struct("<4sIq")
_KEY = struct.Struct(">Q")
_MAX_VALUE = 0xFFFFFFFF  # LMDB's limit on one value (MDB_MAXDATASIZE)


def pack_value(key: bytes, label: int, data: bytes) -> bytes:
    """The value stored under ``key`` for one encoded image."""
    body = struct.pack("<q", label)
    checksum = crc32(data, crc32(body, crc32(key)))
    return _HEADER.pack(MAGIC, checksum, label) + data


def parse_value(key: bytes, value, where: str) -> tuple[bytes, int]:
    """(the image's bytes, its label), once the value passes its checks."""
    if len(value) < _HEADER.size:
        raise CorruptStoreError(f"{where} is truncated ({len(value)} bytes)")
    magic, checksum, label = _HEADER.unpack_from(value)
    view = memoryview(value)
    if magic != MAGIC or crc32(view[8:], crc32(key)) != checksum:
        raise CorruptStoreError(f"{where} fails its magic or CRC-32 check; the store is damaged")
    return bytes(view[_HEADER.size:]), label


def read_plainly(path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label) of every image, read with py-lmdb and zlib alone."""
    store = {}
    with lmdb.open(str(path), readonly=True, lock=False, max_dbs=2) as env:
        chunks = env.open_db(b"chunks", create=False)
        with env.begin() as txn:
            for key, value in txn.cursor(db=chunks):
                magic, checksum, label = struct.unpack_from("<4sIq", value)
                if magic != b"IMGE" or zlib.crc32(value[8:], zlib.crc32(key)) != checksum:
                    raise ValueError(f"the value of id {key.hex()} fails its magic or CRC")
                store[struct.unpack(">Q", key)[0]] = (value[16:], label)
    return store


class EncodedLmdbBackend(LmdbBackend):
    """LMDB holding encoded images: LmdbBackend's environment and transactions, this
    module's values. ``LmdbBackend`` with ``encoding=`` picks it."""
    capabilities = Capabilities(encodings=("jpeg", "png"), arrays=False,
                                max_value_bytes=_MAX_VALUE - _HEADER.size)
    # The crash tests kill it where its commit differs from the array layout's, and at
    # two of the ~30 writes a small write session makes to data.mdb.
    facts = dataclasses.replace(LmdbBackend.facts, plain_reader=read_plainly,
                                crash_points=(("lmdb-in-transaction", 4),),
                                syscall_kills=(3, 20))
    encoded_variant = None

    def _empty(self) -> bool:
        return self._chunks_db is None and not self._open_databases()

    def _write_many(self, ids, datas, labels, overwrite) -> None:
        self._write_txn(lambda txn: self._put_values(txn, ids, datas, labels, overwrite),
                        _size(datas))

    def _append_many(self, datas, labels):
        def work(txn):
            ids = self._new_ids(self._next_id_in(txn), len(datas))
            self._put_values(txn, ids, datas, labels, False)
            return ids
        return self._write_txn(work, _size(datas))

    def _put_values(self, txn, ids, datas, labels, overwrite) -> None:
        for key, data, label in zip(ids.tolist(), datas, labels.tolist()):
            packed = _KEY.pack(key)
            # Another writer process may have taken the id since the base class looked.
            if not txn.put(packed, pack_value(packed, label, data), db=self._chunks_db,
                           overwrite=overwrite):
                self._raise_duplicates([key])

    def _get(self, txn, key: int):
        packed = _KEY.pack(key)
        value = txn.get(packed, db=self._chunks_db)
        if value is None:
            raise self._missing([key])
        return parse_value(packed, value, self._where(key))

    def _where(self, key: int) -> str:
        return f"the value of id {key} in the LMDB store at '{self.path}'"

    def _read_one(self, key):
        if self._empty():
            raise self._missing([key])
        with self._reading() as txn:
            return self._get(txn, key)

    def _read_many(self, ids):
        if self._empty():
            raise self._missing(ids)
        datas, labels = [], np.empty(len(ids), np.int64)
        with self._reading() as txn:
            for i, key in enumerate(ids.tolist()):
                data, labels[i] = self._get(txn, key)
                datas.append(data)
        return datas, labels

    def _ids(self):
        if self._empty():
            return np.zeros(0, np.int64)
        with self._reading() as txn:
            keys = b"".join(txn.cursor(db=self._chunks_db).iternext(keys=True, values=False))
        return np.frombuffer(keys, ">u8").astype(np.int64)

    def _count(self):
        if self._empty():
            return 0
        with self._reading() as txn:
            return txn.stat(self._chunks_db)["entries"]

    def _contains_many(self, ids):
        held = np.zeros(len(ids), bool)
        if self._empty():
            return held
        with self._reading() as txn:
            for i, key in enumerate(ids.tolist()):
                held[i] = txn.get(_KEY.pack(key), db=self._chunks_db) is not None
        return held

    def _max_id(self):
        if self._empty():
            return None
        with self._reading() as txn:
            return self._last_key(txn)

    def _next_id_in(self, txn) -> int:
        if self._chunks_db is None:
            return 0
        last = self._last_key(txn)
        return 0 if last is None else last + 1

    def _last_key(self, txn):
        cursor = txn.cursor(db=self._chunks_db)
        return _KEY.unpack(bytes(cursor.key()))[0] if cursor.last() else None


def _size(datas) -> int:
    return sum(len(data) for data in datas) + 4096 * len(datas)
