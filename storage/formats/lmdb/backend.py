"""LMDB: images packed into chunks of consecutive ids, raw bytes, no pickle.

Layout of a store directory::

    store.json    {"format": "image-store", "backend": "lmdb", "image_shape": [H, W, C], ...}
    data.mdb      the LMDB environment, two named databases:
      b"meta"     b"image_shape" -> 3 x uint32 LE, b"chunk_images" -> uint32 LE K,
                  b"count" -> uint64 LE number of images
      b"chunks"   key: id // K as 8-byte big-endian (key order is id order)
                  value: up to K images, see ``storage.formats.lmdb.chunk`` for its bytes
    lock.mdb      LMDB's reader table

Plain py-lmdb reads it: ``env.open_db(b"chunks")``, then slice a value as the
chunk layout says. Every write is one transaction: a crash leaves the last
committed state. The map grows by itself when full, to fit a whole batch;
readers in other processes pick the new size up without help. Reader slots
left taken by killed processes are cleared when the slots run out; when they
are all really in use, reads raise ReadersFullError. LMDB checks nothing it
reads, so the store refuses a data file shorter than its pages (it would crash
the reader) and checks each value's CRC (``storage.formats.lmdb.chunk``).
"""
from __future__ import annotations

import contextlib
import errno
import os
import struct

import lmdb
import numpy as np

from storage.formats.lmdb import environment as lmdb_env
from storage.core.backend import Backend
from storage.errors import CorruptStoreError, ReadersFullError, StorageFullError, StoreError
from storage.core.files import fsync_directory, storage_looks_full, translate_os_error
from storage.formats.lmdb.chunk import Chunk

_CHUNK_BYTES = 256 * 1024  # a chunk fills about 64 LMDB pages
_INITIAL_MAP_SIZE = 64 * 1024**2
_KEY = struct.Struct(">Q")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SHAPE = struct.Struct("<3I")


def chunk_images_for(image_shape) -> int:
    """Images per chunk: a power of two that keeps a chunk near ``_CHUNK_BYTES``."""
    per_image = int(np.prod(image_shape))
    count = 1
    while count * 2 * per_image <= _CHUNK_BYTES and count < 65536:
        count *= 2
    return count


class LmdbBackend(Backend):
    name = "lmdb"

    def __init__(self, path, mode="r", *, durable=True, map_size=_INITIAL_MAP_SIZE):
        self._initial_map_size = map_size
        super().__init__(path, mode, durable=durable)

    def __getstate__(self):
        return {**super().__getstate__(), "map_size": self._initial_map_size}

    def _open(self, create: bool) -> None:
        try:
            self._env = lmdb_env.acquire(str(self.path), map_size=self._initial_map_size,
                                         writable=self.mode != "r", durable=self.durable)
        except lmdb.ReadersFullError as error:  # opening reads, and that needs a slot
            raise self._readers_full(error) from error
        except lmdb.Error as error:
            raise CorruptStoreError(
                f"cannot open the LMDB environment at '{self.path}': {error}") from error
        try:
            self._check_length()
            self._open_databases()
            if create and self.durable:
                # A new environment's first pages reach the disk only with a sync, and
                # the names of its files only with their directory's.
                self._env.sync(True)
                fsync_directory(self.path)
        except lmdb.NotFoundError:
            if self._read_marker_shape() is not None:
                self._close()
                raise CorruptStoreError(f"the LMDB store at '{self.path}' lacks its databases; "
                                        "it is damaged") from None
            # Its creation was cut short: it holds nothing, and the next writer finishes it.
            self._meta_db = self._chunks_db = None
        except lmdb.Error as error:
            self._close()
            raise CorruptStoreError(
                f"cannot open the LMDB environment at '{self.path}': {error}") from error
        except BaseException:
            self._close()
            raise
        self._chunk_images = None

    def _check_length(self) -> None:
        """LMDB maps the file and trusts it: a page past its end would crash the reader."""
        pages = self._env.info()["last_pgno"] + 1
        length = os.path.getsize(self.path / "data.mdb")
        if pages * self._env.stat()["psize"] > length:
            raise CorruptStoreError(
                f"'{self.path / 'data.mdb'}' is cut short ({length} bytes for {pages} pages); "
                "the store is damaged")

    def _open_databases(self) -> None:
        try:
            self._meta_db = self._env.open_db(b"meta", create=self.mode != "r")
            self._chunks_db = self._env.open_db(b"chunks", create=self.mode != "r")
        except lmdb.ReadersFullError as error:
            if self._env.reader_check() == 0:  # no slots of killed processes to clear
                raise self._readers_full(error) from error
            self._open_databases()

    def _readers_full(self, error) -> ReadersFullError:
        return ReadersFullError(
            f"all LMDB reader slots of '{self.path}' are taken ({error}); close stores or "
            "transactions you no longer need, or use fewer reader processes")

    def _replace_failed_environment(self) -> None:
        self._env = lmdb_env.replace(str(self.path), self._env, map_size=self._initial_map_size,
                                     writable=self.mode != "r", durable=self.durable)
        self._open_databases()

    def _close(self) -> None:
        lmdb_env.release(str(self.path))

    def _after_fork(self) -> None:
        self._open(create=False)  # acquire() drops the parent's environment first

    # ---- transactions --------------------------------------------------------------------
    def _read_txn(self):
        stale_slots_cleared = replaced = False
        while True:
            try:
                return self._env.begin(buffers=True)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map: adopt its size
            except lmdb.PanicError:  # a commit of this process failed (a full disk, say)
                if replaced:
                    raise
                self._replace_failed_environment()
                replaced = True
            except lmdb.ReadersFullError as error:
                # Slots of killed processes stay taken until someone clears them.
                if not stale_slots_cleared and self._env.reader_check() > 0:
                    stale_slots_cleared = True
                    continue
                raise self._readers_full(error) from error

    @contextlib.contextmanager
    def _reading(self):
        """A read transaction; LMDB's own complaints about the file become CorruptStoreError."""
        try:
            with self._read_txn() as txn:
                yield txn
        except (lmdb.MapResizedError, lmdb.ReadersFullError):
            raise
        except lmdb.Error as error:
            raise CorruptStoreError(
                f"cannot read the LMDB store at '{self.path}' ({error}); it is damaged") from error

    def _write_txn(self, work, size: int = 0) -> None:
        """Run ``work(txn)`` in one transaction of about ``size`` bytes, growing the map to fit."""
        replaced = False
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    work(txn)
                return
            except lmdb.MapFullError:
                info, page = self._env.info(), self._env.stat()["psize"]
                used = (info["last_pgno"] + 1) * page
                self._env.set_mapsize(max(2 * info["map_size"], 2 * (used + size)))
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.PanicError as error:  # the last commit failed half way; the file is intact
                if replaced:
                    raise self._write_error(error, size) from error
                self._replace_failed_environment()
                replaced = True
            except lmdb.Error as error:
                raise self._write_error(error, size) from error

    def _write_error(self, error: lmdb.Error, size: int) -> Exception:
        """Our typed error for a failed commit: LMDB reports a short write as EIO."""
        translated = translate_os_error(error, self.path)
        if translated is not error:
            return translated
        if isinstance(error, lmdb.ReadonlyError):
            return translate_os_error(PermissionError(errno.EACCES, str(error)), self.path)
        if "Input/output error" in str(error) and storage_looks_full(self.path / "data.mdb", size):
            return StorageFullError(
                f"no space left to write the store at '{self.path}' ({error}); what was "
                "committed before is intact: free space and write again")
        return error

    def _meta(self, txn, key: bytes, layout: struct.Struct):
        value = txn.get(key, db=self._meta_db)
        return None if value is None else layout.unpack(bytes(value))

    def _chunk_size(self, txn) -> int:
        if self._chunk_images is None:
            stored = self._meta(txn, b"chunk_images", _U32)
            if stored is None:
                return chunk_images_for(self.image_shape)
            self._chunk_images = stored[0]
        return self._chunk_images

    # ---- writing -------------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        shape = images.shape[1:]
        # In id order, each chunk's images are one contiguous slice (no gather copies).
        sorted_ids, sorted_images, sorted_labels = ids, images, labels
        if np.any(np.diff(ids) < 0):
            order = np.argsort(ids, kind="stable")
            sorted_ids, sorted_images, sorted_labels = ids[order], images[order], labels[order]

        def work(txn):
            chunk_images = self._chunk_size(txn)
            if self._meta(txn, b"chunk_images", _U32) is None:
                txn.put(b"chunk_images", _U32.pack(chunk_images), db=self._meta_db)
                txn.put(b"image_shape", _SHAPE.pack(*shape), db=self._meta_db)
            added = 0
            for start, stop in _runs(sorted_ids // chunk_images):
                number = int(sorted_ids[start] // chunk_images)
                new = Chunk((sorted_ids[start:stop] % chunk_images).astype(np.uint32),
                            sorted_labels[start:stop], sorted_images[start:stop])
                key = _KEY.pack(number)
                stored = txn.get(key, db=self._chunks_db)
                if stored is not None:
                    old = Chunk.parse(stored, shape, self._where(number), number)
                    clashes = np.isin(old.slots, new.slots)
                    if clashes.any() and not overwrite:
                        clashing = old.slots[clashes].astype(np.int64)
                        self._raise_duplicates(clashing + number * chunk_images)
                    added -= int(clashes.sum())
                    new = old.merged(new)
                added += stop - start
                txn.put(key, new.to_bytes(number), db=self._chunks_db)
            count = (self._meta(txn, b"count", _U64) or (0,))[0]
            txn.put(b"count", _U64.pack(count + added), db=self._meta_db)

        self._write_txn(work, images.nbytes)

    def _sync(self) -> None:
        self._env.sync(True)

    # ---- reading -------------------------------------------------------------------------
    def _where(self, number: int) -> str:
        return f"chunk {number} of the LMDB store at '{self.path}'"

    def _read_one(self, key):
        with self._reading() as txn:
            if self.image_shape is None:
                self._raise_missing([key])
            chunk_images = self._chunk_size(txn)
            number, slot = divmod(key, chunk_images)
            value = txn.get(_KEY.pack(number), db=self._chunks_db)
            if value is None:
                self._raise_missing([key])
            chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
            position = int(np.searchsorted(chunk.slots, slot))
            if position >= len(chunk.slots) or chunk.slots[position] != slot:
                self._raise_missing([key])
            return chunk.pixels[position].copy(), int(chunk.labels[position])

    def _read_many(self, ids):
        if self.image_shape is None:
            self._raise_missing(ids)
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        labels = np.empty(len(ids), np.int64)
        with self._reading() as txn:
            chunk_images = self._chunk_size(txn)
            chunk_numbers = ids // chunk_images
            order = np.argsort(chunk_numbers, kind="stable")
            for start, stop in _runs(chunk_numbers[order]):
                group = order[start:stop]
                number = int(chunk_numbers[group[0]])
                value = txn.get(_KEY.pack(number), db=self._chunks_db)
                if value is None:
                    self._raise_missing(ids[group])
                chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
                slots = ids[group] % chunk_images
                positions = np.minimum(np.searchsorted(chunk.slots, slots), len(chunk.slots) - 1)
                found = chunk.slots[positions] == slots
                if not found.all():
                    self._raise_missing(ids[group][~found])
                _gather(chunk.pixels, positions, images, group)
                labels[group] = chunk.labels[positions]
        return images, labels

    def _ids(self):
        parts = []
        with self._reading() as txn:
            if self.image_shape is None:
                return np.zeros(0, np.int64)
            chunk_images = self._chunk_size(txn)
            for key, value in txn.cursor(db=self._chunks_db):
                number = _KEY.unpack(bytes(key))[0]
                chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
                parts.append(chunk.slots.astype(np.int64) + number * chunk_images)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _count(self):
        with self._reading() as txn:
            return (self._meta(txn, b"count", _U64) or (0,))[0]

    def _next_id(self):
        with self._reading() as txn:
            cursor = txn.cursor(db=self._chunks_db)
            if not cursor.last():
                return 0
            number = _KEY.unpack(bytes(cursor.key()))[0]
            chunk = Chunk.parse(cursor.value(), self.image_shape, self._where(number), number)
            return number * self._chunk_size(txn) + int(chunk.slots[-1]) + 1


def _runs(values: np.ndarray):
    """(start, stop) of each run of equal values in a sorted array."""
    bounds = np.flatnonzero(np.diff(values)) + 1
    return zip([0, *bounds.tolist()], [*bounds.tolist(), len(values)])


def _gather(pixels, positions, images, destinations) -> None:
    """``images[destinations] = pixels[positions]``, as one slice copy when both are runs."""
    first, last = int(destinations[0]), int(destinations[-1])
    if last - first == len(destinations) - 1 and np.all(np.diff(destinations) == 1):
        start = int(positions[0])
        if int(positions[-1]) - start == len(positions) - 1 and np.all(np.diff(positions) == 1):
            images[first:last + 1] = pixels[start:start + len(positions)]
        else:
            np.take(pixels, positions, axis=0, out=images[first:last + 1])
    else:
        images[destinations] = pixels[positions]
