"""SQLite holding encoded images: the array layout's table, each row's blob the image's bytes.

Layout of ``images.sqlite`` in a store whose ``store.json`` records an ``"encoding"``::

    images(id INTEGER PRIMARY KEY, label INTEGER NOT NULL, data BLOB NOT NULL,
           checksum INTEGER NOT NULL)
                data: the JPEG or PNG file's bytes, byte for byte (any length);
                checksum: CRC-32 of id and label (int64 LE each) followed by data
                (``storage.core.checksums.bytes_checksums``)
    metadata    mode "encoded", encoding "jpeg" or "png", shape "", the rest as for arrays

Pages are 4 KiB, not the array layout's 64 KiB: a row longer than a page fills
whole overflow pages and leaves only its remainder in a leaf, so the file is about
1.04x the bytes (64 KiB pages, which hold two or three whole 20 KB rows each, took
1.23x). WAL, transactions (one per ``write_many``), connections per process
and the writer lock are ``storage.formats.sqlite``'s, so the commit and crash
guarantees are the same. SQLite does not check a row's bytes; the CRC does, and
as it covers the id a row that turns up under another id fails it too: damage
raises CorruptStoreError. SQLite's own limit on a blob is 1,000,000,000 bytes.
Plain ``sqlite3`` reads it: ``SELECT label, data FROM images WHERE id = 7``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import zlib
from pathlib import Path
from urllib.parse import quote

import numpy as np

from storage.core.capabilities import Capabilities
from storage.core.checksums import bytes_checksums, raise_on_failed_checksums
from storage.errors import CorruptStoreError
from storage.formats.sqlite import FILE, SqliteBackend, _one_at_a_time, _queries

_MAX_BLOB = 1_000_000_000  # SQLITE_MAX_LENGTH, the default build's bound on one value


def read_plainly(path: Path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with the ``sqlite3`` and ``zlib`` modules alone."""
    with contextlib.closing(sqlite3.connect(f"file:{quote(str(path / FILE))}?mode=ro",
                                            uri=True)) as db:
        store = {}
        for key, label, data, checksum in db.execute(
                "SELECT id, label, data, checksum FROM images ORDER BY id"):
            head = key.to_bytes(8, "little", signed=True) + label.to_bytes(8, "little", signed=True)
            if zlib.crc32(data, zlib.crc32(head)) != checksum & 0xFFFFFFFFFFFFFFFF:
                raise ValueError(f"the row of id {key} fails its CRC-32")
            store[key] = (data, label)
        return store


class EncodedSqliteBackend(SqliteBackend):
    """``SqliteBackend`` with ``encoding=`` is one of these."""

    capabilities = Capabilities(encodings=("jpeg", "png"), arrays=False,
                                max_value_bytes=_MAX_BLOB)
    # The crash tests kill it where its commit differs from the array layout's, and at
    # two of the ~170 writes a small write session makes to the WAL.
    facts = dataclasses.replace(SqliteBackend.facts, plain_reader=read_plainly,
                                crash_points=(("sqlite-before-commit", 3),),
                                syscall_kills=(5, 120))
    encoded_variant = None
    # Rows of 15-35 KB: 64 KiB pages fit two or three whole rows each and leave the rest
    # empty (1.23x the bytes on disk, measured on 1,000 rows of 10-30 KB); with 4 KiB pages
    # a row fills whole overflow pages and leaves only its remainder in the leaf (1.04x).
    page_size = 4096

    @_one_at_a_time
    def _write_many(self, ids, datas, labels, overwrite) -> None:
        checksums = bytes_checksums(ids, labels, datas).view(np.int64)
        rows = zip(ids.tolist(), labels.tolist(), datas, checksums.tolist())
        with self._translated(sum(map(len, datas))):
            db = self._db()
            with self._transaction(db):
                held = self._held(db, ids)  # for the count (the base class refused held ids)
                db.executemany("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?)", rows)
                count = int(self._meta(db)["count"]) + len(ids) - int(held.sum())
                db.execute("UPDATE metadata SET value = ? WHERE key = 'count'", (str(count),))

    @_one_at_a_time
    def _read_one(self, key):
        with self._translated():
            row = self._reader().execute(
                "SELECT data, label, checksum FROM images WHERE id = ?", (key,)).fetchone()
        if row is None:
            raise self._missing([key])
        self._verify(np.array([key], np.int64), [row])
        return row[0], int(row[1])

    @_one_at_a_time
    def _read_many(self, ids):
        wanted = np.unique(ids)
        rows = []
        with self._translated():
            db = self._reader()
            db.execute("BEGIN")  # one snapshot for every query of this read
            try:
                for query, arguments in _queries("data, label, checksum", wanted):
                    rows += db.execute(query, arguments).fetchall()
                if len(rows) != len(wanted):
                    if len(rows) > len(wanted):
                        raise CorruptStoreError(f"{self._where()} lists an id twice; it is damaged")
                    raise self._missing(wanted[~self._held(db, wanted)])
            finally:
                db.execute("COMMIT")
        labels = self._verify(wanted, rows)
        datas = [row[0] for row in rows]
        if len(wanted) == len(ids) and np.all(wanted == ids):  # asked in id order, once each
            return datas, labels
        positions = np.searchsorted(wanted, ids)
        return [datas[i] for i in positions.tolist()], labels[positions]

    def _verify(self, ids: np.ndarray, rows) -> np.ndarray:
        """The rows' labels, once every row (data, label, checksum) of ``ids`` passes its CRC."""
        labels = np.fromiter((row[1] for row in rows), np.int64, len(rows))
        stored = np.fromiter((row[2] for row in rows), np.int64, len(rows)).view(np.uint64)
        bad = bytes_checksums(ids, labels, [row[0] for row in rows]) != stored
        raise_on_failed_checksums(ids, bad, self._where())
        return labels
