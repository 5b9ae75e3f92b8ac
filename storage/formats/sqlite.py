"""SQLite: one database file, one row per image, a checksum per row; the standard library only.

Layout of a store directory::

    store.json        {"format": "image-store", "backend": "sqlite", "image_shape": [H, W, C], ...}
    images.sqlite     SQLite 3, page_size 65536, journal_mode WAL
      images(id INTEGER PRIMARY KEY, label INTEGER NOT NULL, data BLOB NOT NULL,
             checksum INTEGER NOT NULL)
                      data: the image's H*W*C bytes, uint8 in (H, W, C) order;
                      checksum: ``storage.core.checksums`` of id, label and data, as int64
      metadata(key TEXT PRIMARY KEY, value TEXT NOT NULL)
                      mode "array", shape "H,W,C", dtype "uint8", encoding "none",
                      format_version "1", count (images held)
    images.sqlite-wal, images.sqlite-shm   SQLite's write-ahead log while the store is open

Encoded images (JPEG or PNG bytes) keep this layout with metadata mode "encoded" and
encoding "jpeg" or "png"; see ``storage.formats.sqlite_encoded``.

Plain ``sqlite3`` (the module or the shell) reads it:
``SELECT label, data FROM images WHERE id = 7``, the blob as
``np.frombuffer(data, np.uint8).reshape(H, W, C)``.

64 KiB pages hold about 20 CIFAR rows each; with SQLite's default 4 KiB pages
each 3 KB row takes a page of its own (1.34x the pixel bytes on disk). Every
``write_many`` is one transaction: a crash leaves the last committed state,
whole batches only. Durable stores use ``synchronous=FULL`` (the WAL is fsynced
at each commit), others ``NORMAL`` (safe against a killed process, not a power
cut); a store whose creation a power cut stopped before any write (a database
without its schema) reads empty and is made again by the next writer. Reads go
through a memory map of the file (``mmap_size``) and a 64 MiB page cache. SQLite checks the structure of what it reads but not the bytes of a row,
so every read checks each row's checksum: damage raises CorruptStoreError,
never wrong pixels. Connections belong to one process and are opened on first
use; a connection inherited through fork() is never used or closed (SQLite says
that corrupts databases): the child opens its own. One writer at a time
(``WriterLock``); readers in other processes read the last commit while it writes.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

import numpy as np

from storage.core import handles
from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.checksums import image_checksum, image_checksums, verify_checksums
from storage.core.facts import FormatFacts, PowerLoss
from storage.core.files import WriterLock, storage_looks_full
from storage.errors import CorruptStoreError, ReadOnlyError, StorageFullError, StoreError

FILE = "images.sqlite"
FORMAT_VERSION = 1
PAGE_SIZE = 65536
_CACHE_KIB = 64 * 1024
_MMAP_BYTES = 2**40
_IN_CHUNK = 10_000  # ids per IN (...) query: under SQLite's 32,766 bound variables
_SCHEMA = """
CREATE TABLE metadata(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images(id INTEGER PRIMARY KEY, label INTEGER NOT NULL, data BLOB NOT NULL,
                    checksum INTEGER NOT NULL);
"""


def _one_at_a_time(method):
    """One thread at a time on the object's connection: SQLite's connection is not
    safe to use from two threads at once (its transactions would interleave)."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        with self._connection_turn:
            return method(self, *args, **kwargs)
    return guarded


def read_plainly(path: Path) -> dict[int, tuple[np.ndarray, int]]:
    """The store read with the ``sqlite3`` module alone, as the docstring above describes."""
    with contextlib.closing(sqlite3.connect(f"file:{quote(str(path / FILE))}?mode=ro",
                                            uri=True)) as db:
        meta = dict(db.execute("SELECT key, value FROM metadata"))
        shape = tuple(int(n) for n in meta["shape"].split(",")) if meta.get("shape") else ()
        rows = db.execute("SELECT id, label, data FROM images ORDER BY id")
        return {key: (np.frombuffer(data, np.uint8).reshape(shape), label)
                for key, label, data in rows}


class SqliteBackend(Backend):
    name = "sqlite"
    capabilities = Capabilities(encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.sqlite_encoded:EncodedSqliteBackend"
    page_size = PAGE_SIZE
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,      # one transaction per write_many
        torn_overwrites=False,    # an overwrite is a transaction like any other write
        data_file=FILE + "-wal", write_calls="pwrite64",  # commits go to the WAL first
        syscall_kills=tuple(range(1, 13)),
        crash_points=(("sqlite-before-commit", 1), ("sqlite-before-commit", 3)),
        # Damage to a page pointer can lead SQLite to a freed page that still holds an
        # overwritten row, whose checksum is valid: it reads back one commit behind.
        rolls_back_when_damaged=True,
        file_size_limit=2_000_000,
        # Durable: synchronous=FULL syncs the WAL at each commit (SQLite syncs its directory
        # when it makes the WAL); a store no write reached reads empty (_holds_nothing).
        power_loss=PowerLoss(not_durable_loses=(
            "commits not yet written back (synchronous=NORMAL syncs only at checkpoints), "
            "the store included; a database whose first commit was lost after the marker "
            "recorded a shape gives CorruptStoreError")),
    )

    def _open(self, create: bool) -> None:
        self._connection_turn = threading.RLock()
        self._file = self.path / FILE
        self._handle: sqlite3.Connection | None = None
        self._shape_checked = False
        handles.track(self)
        self._writer_lock = WriterLock(self.path) if self.mode != "r" else None
        try:
            if self.mode != "r" and (create or self._holds_nothing()):
                self._create()
        except BaseException:
            self._close()
            raise

    def _holds_nothing(self) -> bool:
        """No write ever reached the store (its marker records the shape first) and its
        creation was cut short: no database file, or one whose schema was never committed."""
        if self.image_shape is not None:
            return False
        if not self._file.exists():
            return True
        with self._translated():
            return not self._db().execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'metadata'").fetchone()

    def _create(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self._file}{suffix}")
        with self._translated():
            db = self._db(create=True)
            db.execute(f"PRAGMA page_size = {self.page_size}")  # before the first table
            db.execute("PRAGMA journal_mode = WAL")
            with self._transaction(db):
                for statement in _SCHEMA.split(";")[:-1]:  # executescript would commit first
                    db.execute(statement)
                db.executemany("INSERT INTO metadata VALUES (?, ?)", [
                    ("mode", "encoded" if self.encoding else "array"), ("shape", ""),
                    ("dtype", "uint8"), ("encoding", self.encoding or "none"),
                    ("format_version", str(FORMAT_VERSION)), ("count", "0")])

    def _db(self, create: bool = False) -> sqlite3.Connection:
        """This process's connection, opened on first use."""
        if self._handle is None:
            if not create and not self._file.exists():
                raise CorruptStoreError(f"the store at '{self.path}' lacks {FILE}; it is damaged")
            # Readers open read-write where they may (nothing here writes for them), so
            # that the last connection to close removes the WAL and its index as usual.
            access = "rwc" if create else "rw"
            if self.mode == "r" and not os.access(self.path, os.W_OK):
                # SQLite cannot create the WAL's index in a read-only directory; with no
                # WAL nobody is writing, so the file alone is the whole store.
                exists = os.path.exists(f"{self._file}-wal")
                access = "ro" if exists else "ro&immutable=1"
            # isolation_level=None: transactions are begun and ended here, explicitly.
            db = sqlite3.connect(f"file:{quote(str(self._file))}?mode={access}", uri=True,
                                 isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            # SQLite's default cache is 2 MB (31 of our pages); reads map the file instead
            # of copying each page through the cache (a file cut short is checked below).
            db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            db.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
            self._handle = db
        return self._handle

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def _after_fork(self) -> None:
        self._connection_turn = threading.RLock()  # another thread may have held it at fork
        self._handle = None  # inherited: dropped at fork, never closed (storage.core.handles)
        self._writer_lock = None
        self._shape_checked = False

    # ---- errors ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translated(self, size: int = 0):
        """SQLite's errors as ours: a damaged file, a full disk, a read-only place."""
        try:
            yield
        except sqlite3.Error as error:
            raise self._our_error(error, size) from error

    def _our_error(self, error: sqlite3.Error, size: int) -> StoreError:
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        wal = Path(f"{self._file}-wal")
        if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and (
                storage_looks_full(self._file, size) or storage_looks_full(wal, size))):
            return StorageFullError(
                f"no space left to write the store at '{self.path}' ({error}); what was "
                "committed before is intact: free space and write again")
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
            return ReadOnlyError(f"cannot write the store at '{self.path}' ({error}); check the "
                                 "directory's permissions or open it with mode='r'")
        if code == sqlite3.SQLITE_CANTOPEN and not os.access(self.path, os.W_OK):
            return ReadOnlyError(
                f"cannot open '{self._file}' ({error}): SQLite needs to create its "
                "write-ahead log beside it; copy the store to a writable directory")
        return CorruptStoreError(
            f"cannot read the SQLite store at '{self.path}' ({error}); it is damaged")

    @contextlib.contextmanager
    def _transaction(self, db: sqlite3.Connection):
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- writing --------------------------------------------------------------------------
    @_one_at_a_time
    def _write_many(self, ids, images, labels, overwrite) -> None:
        flat = np.ascontiguousarray(images).reshape(len(images), -1)
        checksums = image_checksums(ids, labels, flat).view(np.int64)
        size = flat.shape[1]
        pixels = memoryview(flat).cast("B")
        rows = zip(ids.tolist(), labels.tolist(),
                   (pixels[i * size:(i + 1) * size] for i in range(len(ids))), checksums.tolist())
        with self._translated(flat.nbytes):
            db = self._db()
            with self._transaction(db):
                held = self._held(db, ids)  # for the count (the base class refused held ids)
                db.executemany("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?)", rows)
                count = int(self._meta(db)["count"]) + len(ids) - int(held.sum())
                db.execute("UPDATE metadata SET value = ? WHERE key = 'count'", (str(count),))
                db.execute("UPDATE metadata SET value = ? WHERE key = 'shape' AND value = ''",
                           (",".join(map(str, images.shape[1:])),))

    def _held(self, db, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` the store holds (bool array)."""
        largest = db.execute("SELECT max(id) FROM images").fetchone()[0]
        if largest is None or int(ids.min()) > largest:  # appending: nothing to look up
            return np.zeros(len(ids), bool)
        found = []
        for query, arguments in _queries("id", ids):
            found += [row[0] for row in db.execute(query, arguments)]
        return np.isin(ids, np.array(found, np.int64))

    # ---- reading --------------------------------------------------------------------------
    def _meta(self, db) -> dict[str, str]:
        meta = dict(db.execute("SELECT key, value FROM metadata"))
        if meta.get("format_version") != str(FORMAT_VERSION) or "count" not in meta:
            raise CorruptStoreError(
                f"the SQLite store at '{self.path}' has metadata {meta!r}, not format version "
                f"{FORMAT_VERSION}; it is damaged or newer than this library")
        return meta

    def _reader(self) -> sqlite3.Connection:
        """The connection, with the database's shape checked against the marker once."""
        db = self._db()
        if not self._shape_checked:
            shape = self._meta(db)["shape"]
            marker = self.image_shape
            if shape and (marker is None or shape != ",".join(map(str, marker))):
                raise CorruptStoreError(
                    f"the SQLite store at '{self.path}' holds images of shape {shape}, but "
                    f"its {'store.json'} says {marker}; it is damaged")
            self._shape_checked = True
        return db

    @_one_at_a_time
    def _read_one(self, key):
        with self._translated():
            if self.image_shape is None:
                raise self._missing([key])
            row = self._reader().execute(
                "SELECT label, data, checksum FROM images WHERE id = ?", (key,)).fetchone()
        if row is None:
            raise self._missing([key])
        label, data, checksum = row
        if len(data) != int(np.prod(self.image_shape)):
            raise CorruptStoreError(f"the row of id {key} in {self._where()} holds an image "
                                    "of the wrong size; the store is damaged")
        image = np.frombuffer(data, np.uint8).reshape(self.image_shape).copy()
        if image_checksum(key, label, image) != checksum & (2**64 - 1):
            verify_checksums(np.array([key]), np.array([label]), image[None],
                             np.array([checksum]).view(np.uint64), self._where())
        return image, int(label)

    @_one_at_a_time
    def _read_many(self, ids):
        if self.image_shape is None:
            raise self._missing(ids)
        wanted = np.unique(ids)
        images = np.empty((len(wanted), *self.image_shape), np.uint8)
        labels, checksums = [], []
        with self._translated():
            db = self._reader()
            db.execute("BEGIN")  # one snapshot for every query of this read
            try:
                found = self._copy_rows(db, wanted, images, labels, checksums)
                if found != len(wanted):
                    raise self._missing(wanted[~self._held(db, wanted)])
            finally:
                db.execute("COMMIT")
        labels = np.array(labels, np.int64)
        verify_checksums(wanted, labels, images, np.array(checksums, np.int64).view(np.uint64),
                         self._where())
        if len(wanted) == len(ids) and np.all(wanted == ids):  # asked in id order, once each
            return images, labels
        positions = np.searchsorted(wanted, ids)
        return images[positions], labels[positions]

    def _copy_rows(self, db, wanted, images, labels: list, checksums: list) -> int:
        """Copy the rows of sorted unique ``wanted`` into ``images`` in id order; count them.

        Ids are unique, so as many rows as ids means every one was found, in id order,
        and the id column need not come back. Rows are fetched a few thousand at a
        time and copied straight into ``images``, so that their blobs' memory is reused
        instead of first holding every blob and then joining them. (The blob comes
        first: the sqlite3 module builds such rows twice as fast as (label, data, ...).)
        """
        size = images[0].nbytes
        target = memoryview(images).cast("B")
        position = 0
        for query, arguments in _queries("data, label, checksum", wanted):
            cursor = db.execute(query, arguments)
            while rows := cursor.fetchmany(4096):
                if position + len(rows) > len(wanted):
                    raise CorruptStoreError(f"{self._where()} lists an id twice; it is damaged")
                for data, label, checksum in rows:
                    if len(data) != size:
                        raise CorruptStoreError(f"rows in {self._where()} hold images of the "
                                                "wrong size; the store is damaged")
                    target[position * size:(position + 1) * size] = data
                    labels.append(label)
                    checksums.append(checksum)
                    position += 1
        return position

    def _where(self) -> str:
        return f"the SQLite store at '{self.path}'"

    @_one_at_a_time
    def _ids(self):
        if self._holds_nothing():
            return np.zeros(0, np.int64)
        with self._translated():
            rows = self._reader().execute("SELECT id FROM images ORDER BY id")
            return np.fromiter((row[0] for row in rows), np.int64)

    @_one_at_a_time
    def _count(self):
        if self._holds_nothing():
            return 0
        with self._translated():
            return int(self._meta(self._reader())["count"])

    @_one_at_a_time
    def _max_id(self):
        if self._holds_nothing():
            return None
        with self._translated():
            return self._reader().execute("SELECT max(id) FROM images").fetchone()[0]

    @_one_at_a_time
    def _contains_many(self, ids):
        if self._holds_nothing():
            return np.zeros(len(ids), bool)
        with self._translated():
            return self._held(self._reader(), ids)


def _queries(columns: str, ids: np.ndarray):
    """(SQL, arguments) that select ``columns`` of sorted unique ``ids``, in id order.

    A run of consecutive ids is one ``BETWEEN``; other ids go in ``IN (...)`` lists
    of at most ``_IN_CHUNK``.
    """
    ids = np.unique(ids)
    base = f"SELECT {columns} FROM images WHERE id "
    if int(ids[-1]) - int(ids[0]) == len(ids) - 1:
        yield base + "BETWEEN ? AND ? ORDER BY id", (int(ids[0]), int(ids[-1]))
        return
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start:start + _IN_CHUNK].tolist()
        yield base + f"IN ({','.join('?' * len(chunk))}) ORDER BY id", chunk
