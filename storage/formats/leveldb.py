"""LevelDB (plyvel): LMDB's chunk layout in one sorted key space; one process per store.

Layout of a store directory::

    store.json    {"format": "image-store", "backend": "leveldb", "image_shape": [H, W, C], ...}
    leveldb/      a LevelDB database (CURRENT, LOCK, MANIFEST-*, *.log, *.ldb), no compression
      b"meta:image_shape"   3 x uint32 LE
      b"meta:chunk_images"  uint32 LE K
      b"meta:count"         uint64 LE: images held
      b"chunk:" + (id // K as 8-byte big-endian)
                            up to K images (64 KiB in all) whose ids share id // K, in the byte layout of
                            ``storage.formats.lmdb.chunk`` (labels, checksums, slots, pixels)

Encoded images (JPEG or PNG bytes) have one value per image under b"image:" keys
instead of chunks: see ``storage.formats.leveldb_encoded``.

Keys sort as ids do, so a range read walks consecutive keys. Plain plyvel reads
it: ``plyvel.DB(".../leveldb").get(b"chunk:" + (7 // K).to_bytes(8, "big"))``.

Every ``write_many`` (and ``write_one``) is one ``WriteBatch``: LevelDB logs a
batch as one record with CRCs, so after a kill it replays whole batches only.
Durable stores write that batch with ``sync=True`` and sync the database's
directory after opening and after each ``write_many``: LevelDB renames
``CURRENT`` to a new manifest and starts new logs without syncing their names.
A log whose unsynced tail a power cut tore is read up to the tear (that tail
was never acknowledged), and a database whose creation a power cut stopped
before any write began is made again (readers see it empty). Every value
carries the chunk's header CRC-32, a checksum per image and the CRC of its key
(LevelDB's own block CRCs are checked at open with ``paranoid_checks``, not per
read: the value's own checks cover what a read returns), so damage raises
CorruptStoreError, never wrong pixels.
One exception, as with LMDB's meta pages: a log cut short replays fewer
batches, and the store then opens as of an earlier commit, silently.
Values hold 16 CIFAR images (64 KiB): a single read copies one value, and a
range read still walks a few thousand keys for 100,000 images.

One process at a time: LevelDB locks its directory for the process that opens
it, even to read, so a second process (a DataLoader worker, a reader beside a
writer) gets StoreBusyError. Stores opened for reading open the database on
first use, so a store object can be handed to another process once this one
has closed it. Within one process every store object on a path shares one
database handle; a child inherits none (it is dropped at fork, never closed).
LevelDB writes its LOCK file even to read, so a read-only directory cannot be
read in place: copy the store.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import plyvel

from storage.core import handles
from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts, PowerLoss
from storage.core.files import (WriterLock, fsync_directory, storage_looks_full,
                                translate_os_error)
from storage.errors import (CorruptStoreError, ReadOnlyError, StorageFullError, StoreBusyError,
                            StoreError)
from storage.formats.lmdb.backend import _gather, _runs
from storage.formats.lmdb.chunk import Chunk

DIRECTORY = "leveldb"
_META = b"meta:"
_CHUNK = b"chunk:"
_KEY = struct.Struct(">Q")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SHAPE = struct.Struct("<3I")
_CHUNK_BYTES = 64 * 1024  # values up to this size: see chunk_images_for
_OPTIONS = dict(compression=None,  # pixels do not compress; snappy would only try
                write_buffer_size=64 * 1024**2, block_size=64 * 1024, max_open_files=256,
                bloom_filter_bits=10, lru_cache_size=64 * 1024**2)


def read_plainly(path: Path) -> dict[int, tuple[np.ndarray, int]]:
    """The store read with plyvel alone, as the docstring above describes."""
    db = plyvel.DB(str(path / DIRECTORY))
    try:
        shape = _SHAPE.unpack(db.get(_META + b"image_shape"))
        per_chunk = _U32.unpack(db.get(_META + b"chunk_images"))[0]
        store = {}
        for key, value in db.iterator(prefix=_CHUNK):
            first = _KEY.unpack(key[len(_CHUNK):])[0] * per_chunk
            count = struct.unpack_from("<I", value, 4)[0]
            # b"IMC2" values hold a uint64 checksum per image before the slots; b"IMGC" none
            extra = 8 * count if value[:4] == b"IMC2" else 0
            labels = np.frombuffer(value, "<i8", count, 16)
            slots = np.frombuffer(value, "<u4", count, 16 + 8 * count + extra)
            pixels = np.frombuffer(value, np.uint8, offset=16 + 12 * count + extra).reshape(
                -1, *shape)
            store.update((first + int(slot), (image, int(label)))
                         for slot, image, label in zip(slots, pixels, labels))
        assert _U64.unpack(db.get(_META + b"count"))[0] == len(store)
        return store
    finally:
        db.close()


def chunk_images_for(image_shape) -> int:
    """Images per value: a power of two that keeps a value near ``_CHUNK_BYTES``."""
    per_image = int(np.prod(image_shape))
    count = 1
    while count * 2 * per_image <= _CHUNK_BYTES and count < 65536:
        count *= 2
    return count


class LeveldbBackend(Backend):
    name = "leveldb"
    capabilities = Capabilities(processes="one", encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.leveldb_encoded:EncodedLeveldbBackend"
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,     # one WriteBatch, one log record, per write_many
        torn_overwrites=False,   # an overwrite writes whole new values in a batch
        # The log a store's second session writes (the first wrote 000003.log; opening
        # turns it into table 000005.ldb and starts 000006.log): where the fault tests,
        # which fill a store and then hand it to a writer, inject their faults.
        data_file="leveldb/000006.log", write_calls="write",
        syscall_kills=tuple(range(1, 13)),
        crash_points=(("leveldb-before-batch", 1), ("leveldb-before-batch", 3)),
        # The log has no record of its own length: cut short, it replays fewer batches,
        # and the store opens as of an earlier commit (each value read is still checked).
        rolls_back_when_damaged=True,
        checks_whole_blocks=True,  # a log record is a whole batch, a table block 64 KiB
        file_size_limit=2_000_000,
        reads_read_only_directory=False,  # LevelDB opens its LOCK file for writing
        # Durable: sync=True batches, the directory synced after opening and after each
        # write_many; a database no write reached is made again (or read empty).
        power_loss=PowerLoss(not_durable_loses=(
            "batches not yet written back, the store included; a database whose manifest "
            "or CURRENT LevelDB had not synced fails to open (CorruptStoreError)")),
    )

    def _open(self, create: bool) -> None:
        self._directory = self.path / DIRECTORY
        self._handle = None
        self._chunk_images = None
        self._writer_lock = WriterLock(self.path) if self.mode != "r" else None
        try:
            if self.mode != "r":
                self._db()  # a writer holds the database from the start
                if self.durable:
                    # Opening renames CURRENT to a new manifest and creates a new log without
                    # syncing the directory after: a store whose open returned must open.
                    self._sync()
                    fsync_directory(self.path)  # the database directory's own name
        except BaseException:
            self._close()
            raise

    def _db(self) -> plyvel.DB:
        """The database, opened on first use (and only then locked against other processes)."""
        if self._handle is None:
            if self.mode == "r" and not (self._directory / "CURRENT").exists():
                if self._read_marker_shape() is not None:
                    raise CorruptStoreError(f"the store at '{self.path}' lacks its LevelDB "
                                            "database; it is damaged")
                return None  # its creation was cut short: it holds nothing
            try:
                self._handle = _databases.acquire(self._directory, self)
            except CorruptStoreError:
                if self._read_marker_shape() is not None:
                    raise
                # No write ever began (the marker records the shape first): a power cut
                # while LevelDB made its first files, whose manifest it never syncs.
                if self.mode == "r":
                    return None  # it holds nothing
                shutil.rmtree(self._directory)
                self._handle = _databases.acquire(self._directory, self)
        return self._handle

    def _sync(self) -> None:
        """The directory: LevelDB syncs a new log's bytes (``sync=True``) but not its name,
        which it makes when a full memtable moves to a new log in the middle of a session."""
        fsync_directory(self._directory)

    def _close(self) -> None:
        self._handle = None
        _databases.release(self._directory, self)
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def _after_fork(self) -> None:
        self._handle = None  # dropped at fork, never closed (see _Databases)
        self._writer_lock = None

    # ---- errors ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translated(self, size: int = 0):
        try:
            yield
        except plyvel.Error as error:
            raise self._our_error(error, size) from error

    def _our_error(self, error: plyvel.Error, size: int) -> StoreError:
        message = str(error)
        if isinstance(error, plyvel.IOError):
            translated = translate_os_error(error, self.path)
            if translated is not error:
                return translated
            if "No space left" in message or storage_looks_full(self._directory / "x", size):
                return StorageFullError(
                    f"no space left to write the store at '{self.path}' ({message}); what "
                    "was committed before is intact: free space and write again")
        return CorruptStoreError(
            f"cannot read the LevelDB store at '{self.path}' ({message}); it is damaged")

    # ---- writing -----------------------------------------------------------------------------
    def _chunk_size(self, db) -> int:
        if self._chunk_images is None:
            stored = db.get(_META + b"chunk_images")
            if stored is None:
                return chunk_images_for(self.image_shape)
            self._chunk_images = _U32.unpack(stored)[0]
        return self._chunk_images

    def _write_many(self, ids, images, labels, overwrite) -> None:
        shape = images.shape[1:]
        if np.any(np.diff(ids) < 0):  # in id order each chunk's images are one slice
            order = np.argsort(ids, kind="stable")
            ids, images, labels = ids[order], images[order], labels[order]
        with self._translated(images.nbytes):
            db = self._db()
            chunk_images = self._chunk_size(db)
            batch = db.write_batch(sync=self.durable)
            if db.get(_META + b"chunk_images") is None:
                batch.put(_META + b"chunk_images", _U32.pack(chunk_images))
                batch.put(_META + b"image_shape", _SHAPE.pack(*shape))
            added = 0
            for start, stop in _runs(ids // chunk_images):
                number = int(ids[start] // chunk_images)
                new = Chunk((ids[start:stop] % chunk_images).astype(np.uint32),
                            labels[start:stop], images[start:stop])
                key = _CHUNK + _KEY.pack(number)
                stored = db.get(key)
                if stored is not None:
                    old = Chunk.parse(stored, shape, self._where(number), number)
                    # Held ids are replaced (the base class refused them without overwrite).
                    added -= int(np.isin(old.slots, new.slots).sum())
                    new = old.merged(new)
                added += stop - start
                batch.put(key, bytes(new.to_bytes(number)))
            batch.put(_META + b"count", _U64.pack(self._count() + added))
            self._commit(batch)

    def _commit(self, batch) -> None:
        """One batch, one log record: the commit (a separate method for the crash tests)."""
        try:
            batch.write()
        except plyvel.Error:
            # The log may now end in half a record, and LevelDB would append after it:
            # start a fresh log (reopening drops the torn tail) before writing again.
            self._handle = None
            _databases.reopen(self._directory)
            raise

    # ---- reading -----------------------------------------------------------------------------
    def _where(self, number: int) -> str:
        return f"chunk {number} of the LevelDB store at '{self.path}'"

    def _chunk(self, db, number: int):
        value = db.get(_CHUNK + _KEY.pack(number))
        if value is None:
            return None
        return Chunk.parse(value, self.image_shape, self._where(number), number)

    def _read_one(self, key):
        with self._translated():
            db = self._db()
            if db is None or self.image_shape is None:
                raise self._missing([key])
            number, slot = divmod(key, self._chunk_size(db))
            chunk = self._chunk(db, number)
        if chunk is None:
            raise self._missing([key])
        position = int(np.searchsorted(chunk.slots, slot))
        if position >= len(chunk.slots) or chunk.slots[position] != slot:
            raise self._missing([key])
        return chunk.checked([position])[position].copy(), int(chunk.labels[position])

    def _read_many(self, ids):
        if self.image_shape is None:
            raise self._missing(ids)
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        labels = np.empty(len(ids), np.int64)
        with self._translated():
            db = self._db()
            if db is None:
                raise self._missing(ids)
            chunk_images = self._chunk_size(db)
            for group, number, value in self._grouped_values(db, ids, chunk_images):
                if value is None:
                    raise self._missing(ids[group])
                chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
                slots = ids[group] % chunk_images
                positions = np.minimum(np.searchsorted(chunk.slots, slots), len(chunk.slots) - 1)
                found = chunk.slots[positions] == slots
                if not found.all():
                    raise self._missing(ids[group][~found])
                _gather(chunk.checked(positions), positions, images, group)
                labels[group] = chunk.labels[positions]
        return images, labels

    def _grouped_values(self, db, ids, chunk_images: int):
        """Per value the ids fall in: (their positions in ``ids``, its number, the value or
        None). Values of consecutive chunks come from one iterator (one snapshot), others
        by get."""
        numbers = ids // chunk_images
        order = np.argsort(numbers, kind="stable")
        runs = list(_runs(numbers[order]))
        values = self._values(db, [int(numbers[order[start]]) for start, _ in runs])
        for (start, stop), (number, value) in zip(runs, values):
            yield order[start:stop], number, value

    def _values(self, db, numbers: list[int]):
        """(number, value or None) for ascending chunk ``numbers``, read from one snapshot."""
        with db.snapshot() as snapshot:
            if len(numbers) > 8 and numbers[-1] - numbers[0] < 2 * len(numbers):
                wanted = iter(numbers)
                number = next(wanted)
                start, stop = _CHUNK + _KEY.pack(numbers[0]), _CHUNK + _KEY.pack(numbers[-1] + 1)
                for key, value in snapshot.iterator(start=start, stop=stop):
                    held = _KEY.unpack(key[len(_CHUNK):])[0]
                    while number is not None and number < held:
                        yield number, None
                        number = next(wanted, None)
                    if number == held:
                        yield number, value
                        number = next(wanted, None)
                while number is not None:
                    yield number, None
                    number = next(wanted, None)
            else:
                for number in numbers:
                    yield number, snapshot.get(_CHUNK + _KEY.pack(number))

    def _ids(self):
        with self._translated():
            db = self._db()
            if db is None or self.image_shape is None:
                return np.zeros(0, np.int64)
            chunk_images = self._chunk_size(db)
            parts = []
            for key, value in db.iterator(prefix=_CHUNK):
                number = _KEY.unpack(key[len(_CHUNK):])[0]
                chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
                parts.append(chunk.slots.astype(np.int64) + number * chunk_images)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _count(self):
        with self._translated():
            db = self._db()
            value = db.get(_META + b"count") if db is not None else None
        return _U64.unpack(value)[0] if value is not None else 0

    def _contains_many(self, ids):
        held = np.zeros(len(ids), bool)
        with self._translated():
            db = self._db()
            if db is None or self.image_shape is None:
                return held
            chunk_images = self._chunk_size(db)
            for group, number, value in self._grouped_values(db, ids, chunk_images):
                if value is not None:
                    slots = Chunk.parse(value, self.image_shape, self._where(number),
                                        number).slots
                    held[group] = np.isin(ids[group] % chunk_images, slots)
        return held

    def _max_id(self):
        with self._translated():
            db = self._db()
            if db is None or self.image_shape is None:
                return None
            with db.iterator(prefix=_CHUNK, reverse=True) as last:
                entry = next(last, None)
            if entry is None:
                return None
            number = _KEY.unpack(entry[0][len(_CHUNK):])[0]
            chunk = Chunk.parse(entry[1], self.image_shape, self._where(number), number)
            return number * self._chunk_size(db) + int(chunk.slots[-1])


class _Databases:
    """One plyvel.DB per directory per process, shared by its store objects.

    LevelDB refuses a second open of a directory in one process as it does in
    another; a forked child abandons the parent's handles (never closing them).
    """

    def __init__(self):
        self._lock = threading.Lock()
        # real path -> [db (None while reopening), user count, the store objects using it]
        self._open: dict[str, list] = {}
        handles.in_forked_child(self._forget)

    def acquire(self, directory: Path, store: LeveldbBackend) -> plyvel.DB:
        """The database, counting one more user (once per store object)."""
        key = os.path.realpath(directory)
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = [_open_database(directory, store), 1]
            elif entry[0] is None:  # closed by reopen() and not yet open again
                entry[0] = _open_database(directory, store)
            elif store not in entry[2:]:
                entry[1] += 1
            if store not in entry[2:]:
                entry.append(store)
            return entry[0]

    def reopen(self, directory: Path) -> None:
        """Close the database after a failed write; the next use opens it afresh."""
        with self._lock:
            entry = self._open.get(os.path.realpath(directory))
            if entry is not None and entry[0] is not None:
                entry[0].close()
                entry[0] = None
                for store in entry[2:]:
                    store._handle = None

    def release(self, directory: Path, store: LeveldbBackend) -> None:
        key = os.path.realpath(directory)
        with self._lock:
            entry = self._open.get(key)
            if entry is not None and store in entry[2:]:
                entry.remove(store)
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._open[key]
                    if entry[0] is not None:
                        entry[0].close()

    def _forget(self) -> None:
        for db, *_users in self._open.values():
            handles.abandon(db)
        self._open.clear()
        self._lock = threading.Lock()


# What LevelDB's log reader reports for a record cut short or torn (a table block's
# damage says "block checksum mismatch" and stays an error).
_TORN_LOG_TAIL = {"partial record without end", "checksum mismatch", "bad record length",
                  "missing start of fragmented record(1)", "missing start of fragmented record(2)",
                  "error in middle of record"}


def _open_database(directory: Path, store: LeveldbBackend) -> plyvel.DB:
    try:
        try:
            return plyvel.DB(str(directory), create_if_missing=store.mode != "r",
                             paranoid_checks=True, **_OPTIONS)
        except plyvel.CorruptionError as error:
            reason = error.args[0] if error.args else b""
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            if str(reason).removeprefix("Corruption: ") not in _TORN_LOG_TAIL:
                raise
            # The log ends in half a batch: the write a full disk, a kill or a power cut
            # (its unsynced pages torn) cut short, never acknowledged. Without paranoid
            # checks LevelDB drops that tail.
            return plyvel.DB(str(directory), paranoid_checks=False, **_OPTIONS)
    except plyvel.IOError as error:
        message = str(error)
        if "LOCK" in message and ("already held" in message or "Resource temporarily" in message):
            raise StoreBusyError(
                f"another process has the LevelDB store at '{store.path}' open; LevelDB allows "
                "one process per store, even for reading: close it there first, or use a "
                "format that readers in several processes can share (lmdb, sqlite)") from error
        if "Permission denied" in message or "Read-only file system" in message:
            raise ReadOnlyError(
                f"cannot open the LevelDB store at '{store.path}' ({message}): LevelDB writes its "
                "LOCK file even to read; copy the store to a writable directory") from error
        raise store._our_error(error, 0) from error
    except plyvel.Error as error:
        raise store._our_error(error, 0) from error


_databases = _Databases()
