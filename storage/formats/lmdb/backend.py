"""LMDB: images packed into chunks of consecutive ids, raw bytes, no pickle.

Layout of a store directory::

    store.json    {"format": "image-store", "backend": "lmdb", "image_shape": [H, W, C], ...}
    data.mdb      the LMDB environment, two named databases:
      b"meta"     b"image_shape" -> 3 x uint32 LE, b"chunk_images" -> uint32 LE K,
                  b"count" -> uint64 LE number of images (for plain readers; len()
                  counts the chunks' headers)
      b"chunks"   key: id // K as 8-byte big-endian (key order is id order)
                  value: up to K images, see ``storage.formats.lmdb.chunk`` for its bytes
    lock.mdb      LMDB's reader table

K is per store: images per chunk for about 256 KiB (``chunk_images_for``: 64
for 32x32x3, 16 for 64x64x3, 1 for 224x224x3); read it from ``meta``. Plain
py-lmdb reads it: ``env = lmdb.open(path, max_dbs=2, readonly=True)`` (named
databases need ``max_dbs``; ``python -m lmdb stat`` shows only the main one),
``env.open_db(b"chunks")``, then slice a value as the chunk layout says. K and
the shape read from ``meta`` are checked against the marker. Writers in several
processes may write at once; automatic ids are chosen inside the write's own
transaction. Every write is one transaction: a crash leaves the last
committed state. The map grows by itself when full, to fit a whole batch;
readers in other processes pick the new size up without help. Reader slots
left taken by killed processes are cleared when the slots run out; when they
are all really in use, reads raise ReadersFullError. LMDB checks nothing it
reads, so the store refuses a data file shorter than its pages (it would crash
the reader) and checks what each read returns: a value's header CRC, each image's
checksum, the key's CRC (``storage.formats.lmdb.chunk``).
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import struct
from dataclasses import dataclass
import sys

import lmdb
import numpy as np

from storage.formats.lmdb import environment as lmdb_env
from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.checksums import PendingChecks, image_checksums
from storage.core.facts import FormatFacts, NOT_CREATED_YET, PowerLoss
from storage.core.options import Options, is_int, option
from storage.errors import CorruptStoreError, ReadersFullError, StorageFullError
from storage.core.files import fsync_directory, storage_looks_full, translate_os_error
from storage.formats.lmdb.chunk import MAGIC, Chunk, locate, read_image
from storage.formats.lmdb.plain import read_plainly

_CHUNK_BYTES = 256 * 1024  # a chunk fills about 64 LMDB pages
_INITIAL_MAP_SIZE = 64 * 1024**2
_MIN_MAP_SIZE = 64 * 1024  # 16 pages: LMDB needs room for its meta and first tree pages
_MAX_MAP_SIZE = 2**46  # beyond the address space a process can map
# A batch whose ids fall at most this many per value, on average, is read id by id
# (locating each image from its value's header) rather than value by value (parsing each).
_SCATTERED = 4
# Bytes of images read and checked at a time: the check then reads copies still in the
# CPU's cache (about 17 GB/s there, 8.6 from memory). 256 px: 21 images a block, 512 px: 5;
# 1 MiB blocks held a single 512 px image and their own costs ate the gain.
_BLOCK_BYTES = 4 * 1024 * 1024
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


@dataclass(frozen=True)
class LmdbOptions(Options):
    # The map LMDB starts with; it grows by itself when a batch does not fit.
    map_size: int = option(_INITIAL_MAP_SIZE,
                           "a positive number of bytes (an int) from 64 KiB to 2**46; "
                           "the map grows by itself, so the default suits most stores",
                           lambda value: is_int(value) and _MIN_MAP_SIZE <= value <= _MAX_MAP_SIZE)
    # Off: the kernel reads only the pages a read touches; for random reads of a store
    # larger than RAM. A cold scan then runs many times slower (README). A process's
    # stores on one path share one environment, so the first to open it decides.
    readahead: bool = option(True, "True or False", lambda value: isinstance(value, bool))


class LmdbBackend(Backend):
    name = "lmdb"
    Options = LmdbOptions
    # Encoded images: storage.formats.lmdb.encoded (set as encoded_variant by the package).
    capabilities = Capabilities(encodings=("jpeg", "png"))
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,  # one transaction per write_many
        torn_overwrites=False,  # copy-on-write pages: an overwrite is whole or absent
        data_file="data.mdb", write_calls="pwrite64,pwritev,writev",
        syscall_kills=tuple(range(1, 13)),  # about two writes to data.mdb per commit
        crash_points=(("lmdb-in-transaction", 1), ("lmdb-in-transaction", 4)),
        # LMDB's two meta pages carry no checksum: damage to the newer one opens the
        # store as of the commit before (tests/reliability/test_corruption.py).
        rolls_back_when_damaged=True,
        file_size_limit=2_000_000,
        # LMDB writes its first pages when the environment is created, before the backend
        # can sync them: a cut there leaves a data.mdb that is not yet an LMDB file.
        power_loss=PowerLoss(errors_before_created=(*NOT_CREATED_YET, CorruptStoreError),
                             not_durable_loses=(
            "commits not yet written back; a meta page written before its pages leaves an "
            "environment that fails to open (CorruptStoreError)")),
    )
    concurrent_writers = True  # LMDB serializes writers of any process itself

    def _open(self, create: bool) -> None:
        try:
            self._env_key = os.path.realpath(self.path)  # computed once: a third of an open
            self._env = lmdb_env.acquire(self._env_key, map_size=self.options.map_size,
                                         writable=self.mode != "r",
                                         readahead=self.options.readahead, durable=self.durable)
        except lmdb.ReadersFullError as error:  # opening reads, and that needs a slot
            raise self._readers_full(error) from error
        except lmdb.Error as error:
            raise CorruptStoreError(
                f"cannot open the LMDB environment at '{self.path}': {error}") from error
        try:
            self._check_length()
            if not self._open_databases():
                if self._read_marker_shape() is not None:
                    raise CorruptStoreError(f"the LMDB store at '{self.path}' lacks its "
                                            "databases; it is damaged")
                # Its creation was cut short (or is under way): it holds nothing, and a
                # writer creates them now, in a commit of their own.
                if self.mode != "r":
                    self._write_txn(lambda txn: None)
            if create and self.durable:
                # A new environment's first pages reach the disk only with a sync, and
                # the names of its files only with their directory's.
                self._env.sync(True)
                fsync_directory(self.path)
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

    def _open_databases(self) -> bool:
        """Take the shared database handles; False while the store has no databases yet."""
        try:
            handles = lmdb_env.databases(self._env_key, self._env)
        except lmdb.ReadersFullError as error:
            if self._env.reader_check() == 0:  # no slots of killed processes to clear
                raise self._readers_full(error) from error
            return self._open_databases()
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return self._open_databases()
        self._meta_db, self._chunks_db = handles or (None, None)
        return handles is not None

    def _readers_full(self, error) -> ReadersFullError:
        return ReadersFullError(
            f"all LMDB reader slots of '{self.path}' are taken ({error}); close stores or "
            "transactions you no longer need, or use fewer reader processes")

    def _replace_failed_environment(self) -> None:
        self._env = lmdb_env.replace(self._env_key, self._env, map_size=self.options.map_size,
                                     writable=self.mode != "r",
                                     readahead=self.options.readahead, durable=self.durable)
        self._open_databases()

    def _close(self) -> None:
        lmdb_env.release(self._env_key)

    def _after_fork(self) -> None:
        self._open(create=False)  # the parent's environment was dropped at fork (environment.py)

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
            raise self._damaged(error) from error

    def _damaged(self, error: lmdb.Error) -> CorruptStoreError:
        return CorruptStoreError(
            f"cannot read the LMDB store at '{self.path}' ({error}); it is damaged")

    def _write_txn(self, work, size: int = 0):
        """Run ``work(txn)`` in one transaction of about ``size`` bytes, growing the map to fit."""
        replaced = False
        self._make_room(size)
        while True:
            creating = self._chunks_db is None  # the store's first commit creates them
            if creating and self._open_databases():  # another writer created them meanwhile
                creating = False
            try:
                with self._env.begin(write=True) as txn:
                    if creating:
                        self._meta_db, self._chunks_db = lmdb_env.create_databases(self._env, txn)
                    result = work(txn)
                if creating:  # share the handles, now that they exist
                    lmdb_env.databases(self._env_key, self._env, (self._meta_db, self._chunks_db))
                return result
            except lmdb.MapFullError:
                self._grow_map(size)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.PanicError as error:  # the last commit failed half way; the file is intact
                if replaced:
                    raise self._write_error(error, size) from error
                self._replace_failed_environment()
                replaced = True
            except lmdb.Error as error:
                raise self._write_error(error, size) from error
            finally:
                if creating and sys.exc_info()[0] is not None:
                    self._meta_db = self._chunks_db = None  # an aborted commit closed them

    def _make_room(self, size: int) -> None:
        """Grow the map before a transaction of ``size`` bytes that would not fit: one that
        runs out of map is redone whole (a 200 MB batch of 256 px images, twice over)."""
        if not size:
            return
        info, page = self._env.info(), self._env.stat()["psize"]
        # Each value takes whole pages, and new branch pages come on top.
        if (info["last_pgno"] + 1) * page + size + size // 8 > info["map_size"]:
            self._grow_map(size)

    def _grow_map(self, size: int) -> None:
        info, page = self._env.info(), self._env.stat()["psize"]
        used = (info["last_pgno"] + 1) * page
        self._env.set_mapsize(max(2 * info["map_size"], 2 * (used + size)))

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

    def _empty(self) -> bool:
        """Nothing to read: no shape yet, or no databases (another writer's first commit
        may have created them since this object opened)."""
        return self.image_shape is None or (self._chunks_db is None
                                            and not self._open_databases())

    def _meta(self, txn, key: bytes, layout: struct.Struct):
        value = txn.get(key, db=self._meta_db)
        return None if value is None else layout.unpack(bytes(value))

    def _chunk_size(self, txn) -> int:
        """Images per chunk (K): every id's key depends on it, so it is checked, not trusted.

        K follows from the image shape (``chunk_images_for``), and the ``meta`` values
        must agree with it and with ``store.json``: a damaged K would send reads to
        other ids' slots.
        """
        if self._chunk_images is None:
            expected = chunk_images_for(self.image_shape)
            stored = self._meta(txn, b"chunk_images", _U32)
            if stored is None:
                return expected
            shape = self._meta(txn, b"image_shape", _SHAPE)
            if stored[0] != expected or (shape is not None and shape != self.image_shape):
                raise CorruptStoreError(
                    f"the meta database of the LMDB store at '{self.path}' holds "
                    f"{stored[0]} images per chunk and shape {shape}, where images of shape "
                    f"{self.image_shape} take {expected}; the store is damaged")
            self._chunk_images = stored[0]
        return self._chunk_images

    # ---- writing -------------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        self._write_txn(lambda txn: self._put_batch(txn, ids, images, labels, overwrite),
                        images.nbytes)

    def _append_many(self, images, labels):
        """The ids after the largest held, chosen inside the commit: another writer
        process appending at the same time gets the ids after these, never the same."""
        def work(txn):
            ids = self._new_ids(self._next_id_in(txn), len(images))
            self._put_batch(txn, ids, images, labels, False)
            return ids
        return self._write_txn(work, images.nbytes)

    def _put_batch(self, txn, ids, images, labels, overwrite) -> None:
        shape = images.shape[1:]
        # In id order, each chunk's images are one contiguous slice (no gather copies).
        sorted_ids, sorted_images, sorted_labels = ids, images, labels
        if np.any(np.diff(ids) < 0):
            order = np.argsort(ids, kind="stable")
            sorted_ids, sorted_images, sorted_labels = ids[order], images[order], labels[order]

        chunk_images = self._chunk_size(txn)
        if self._meta(txn, b"chunk_images", _U32) is None:
            txn.put(b"chunk_images", _U32.pack(chunk_images), db=self._meta_db)
            txn.put(b"image_shape", _SHAPE.pack(*shape), db=self._meta_db)
        added, value = 0, None
        slots = sorted_ids % chunk_images
        # One matrix product for the whole batch, not one per value.
        checksums = image_checksums(slots, sorted_labels.astype(np.int64, copy=False),
                                    sorted_images)
        for start, stop in _runs(sorted_ids // chunk_images):
            number = int(sorted_ids[start] // chunk_images)
            new = Chunk(slots[start:stop].astype(np.uint32), sorted_labels[start:stop],
                        sorted_images[start:stop], checksums[start:stop])
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
            value = new.to_bytes(number, value)
            txn.put(key, value, db=self._chunks_db)
        # Kept for plain readers; len() counts the chunks' own (checked) headers instead.
        count = (self._meta(txn, b"count", _U64) or (0,))[0]
        txn.put(b"count", _U64.pack(count + added), db=self._meta_db)

    def _sync(self) -> None:
        self._env.sync(True)

    # ---- reading -------------------------------------------------------------------------
    def _where(self, number: int) -> str:
        return f"chunk {number} of the LMDB store at '{self.path}'"

    def _read_one(self, key):
        if self._empty():
            raise self._missing([key])
        try:  # as _reading does, inline: the context manager cost a tenth of a read
            with self._read_txn() as txn:
                number, slot = divmod(key, self._chunk_size(txn))
                # A view of the memory map (buffers=True), valid until the transaction
                # ends: read_image copies the one image out and checks only its bytes.
                value = txn.get(_KEY.pack(number), db=self._chunks_db)
                found = None if value is None else read_image(
                    value, self.image_shape, slot, self._where, number)
        except (lmdb.MapResizedError, lmdb.ReadersFullError):
            raise
        except lmdb.Error as error:
            raise self._damaged(error) from error
        if found is None:
            raise self._missing([key])
        return found

    def _read_many(self, ids):
        if self._empty():
            raise self._missing(ids)
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        checks = PendingChecks(images, self._block_rows())
        labels = self._read_unchecked(ids, images, np.arange(len(ids)), checks)
        checks.verify()
        return images, labels

    def _block_rows(self) -> int:
        """Images read and checked at a time: 4 MiB, so that the check reads copies
        still in the CPU's cache (one pass over a whole large batch cost 40 % more)."""
        return max(1, _BLOCK_BYTES // math.prod(self.image_shape))

    def _read_into(self, ids, images, rows, checks):
        self._check_usable()
        if self._empty():
            raise self._missing(ids)
        return self._read_unchecked(ids, images, rows, checks)

    def _read_unchecked(self, ids, images, rows, checks):
        """Copy ``ids`` into ``images[rows]`` and hand their checks to ``checks``; return
        their labels."""
        try:  # as _reading does, inline: a shard's part of a batch is a few ids
            with self._read_txn() as txn:
                chunk_images = self._chunk_size(txn)
                per_block = self._block_rows()
                if len(ids) <= per_block:
                    return self._read_block(txn, ids, chunk_images, images, rows, checks)
                labels = np.empty(len(ids), np.int64)
                for start in range(0, len(ids), per_block):  # see _block_rows
                    block = slice(start, start + per_block)
                    labels[block] = self._read_block(txn, ids[block], chunk_images, images,
                                                     rows[block], checks)
        except (lmdb.MapResizedError, lmdb.ReadersFullError):
            raise
        except lmdb.Error as error:
            raise self._damaged(error) from error
        return labels

    def _read_block(self, txn, ids, chunk_images, images, rows, checks):
        """Read ``ids`` into ``images[rows]``; return their labels, their checks added to
        ``checks``."""
        numbers = ids // chunk_images
        if len(ids) <= 64:  # a shard's part of a batch: Python's min, max and set are quicker
            listed = numbers.tolist()
            span, distinct = max(listed) - min(listed) + 1, len(set(listed))
        else:
            span, distinct = int(numbers.max() - numbers.min()) + 1, None
        first = int(ids[0])
        if (len(ids) > 1 and int(ids[-1]) - first == len(ids) - 1
                and np.array_equal(ids, np.arange(first, first + len(ids)))):
            labels, checksums, legacy = self._read_range(txn, first, len(ids), chunk_images,
                                                         images, rows)
        elif len(ids) <= _SCATTERED * span and len(ids) <= _SCATTERED * (
                distinct or len(np.unique(numbers))):
            labels, checksums, legacy = self._read_scattered(txn, ids, chunk_images, images,
                                                             rows)
        else:
            labels, checksums, legacy = self._read_grouped(txn, ids, chunk_images, images, rows)
        # The copies are checked later, in one matrix product with the rest.
        chosen = slice(None) if legacy is None else ~legacy
        checked = ids[chosen]
        checks.add(rows[chosen], checked, checked % chunk_images, labels[chosen],
                   checksums[chosen], f"the LMDB store at '{self.path}'")
        return labels

    def _read_scattered(self, txn, ids, chunk_images, images, rows):
        """Ids that fall about one per value (a shuffled batch), in their order: each
        located from its value's header fields and copied, without parsing the value.
        (labels, stored checksums, None or where legacy values were checked whole)."""
        shape, image_bytes = self.image_shape, images[0].nbytes
        output = memoryview(images).cast("B")
        labels, checksums, legacy = [], [], None
        get, database, where = txn.get, self._chunks_db, self._where
        for index, (row, key) in enumerate(zip(rows.tolist(), ids.tolist())):
            number, slot = divmod(key, chunk_images)
            value = get(_KEY.pack(number), db=database)
            if value is not None and value[:4] == MAGIC:
                found = locate(value, shape, image_bytes, slot, where, number)
                if found is not None:
                    start, label, checksum = found
                    output[row * image_bytes:(row + 1) * image_bytes] = \
                        memoryview(value)[start:start + image_bytes]
                    labels.append(label), checksums.append(checksum)
                    continue
            elif value is not None:  # a legacy value, checked whole by read_image
                found = read_image(value, shape, slot, where, number)
                if found is not None:
                    images[row] = found[0]
                    labels.append(found[1]), checksums.append(0)
                    if legacy is None:
                        legacy = np.zeros(len(ids), bool)
                    legacy[index] = True
                    continue
            raise self._missing(ids[[index]])
        return np.array(labels, np.int64), np.array(checksums, np.uint64), legacy

    def _read_range(self, txn, first, count, chunk_images, images, rows):
        """Ids ``first`` to ``first + count - 1`` (a scan in id order): each value's part
        copied as one slice where the value is full, with no search or gather.
        (labels, stored checksums, None or where legacy values were checked whole)."""
        if not (int(rows[-1]) - int(rows[0]) == count - 1
                and np.array_equal(rows, np.arange(int(rows[0]), int(rows[0]) + count))):
            return self._read_grouped(txn, np.arange(first, first + count), chunk_images,
                                      images, rows)
        labels = np.empty(count, np.int64)
        checksums = np.empty(count, np.uint64)
        legacy = None
        row0, stop = int(rows[0]), first + count
        get, database, shape = txn.get, self._chunks_db, self.image_shape
        for number in range(first // chunk_images, (stop - 1) // chunk_images + 1):
            low = max(first, number * chunk_images)
            high = min(stop, (number + 1) * chunk_images)
            value = get(_KEY.pack(number), db=database)
            if value is None:
                raise self._missing(np.arange(low, high))
            chunk = Chunk.parse(value, shape, self._where(number), number)
            slots = chunk.slots
            here = slice(low - first, high - first)
            # A value whose slots run 0..n-1 holds slot s at position s (the header CRC
            # has checked the slots, which are written ascending and distinct).
            if len(slots) and slots[0] == 0 and slots[-1] == len(slots) - 1:
                start, end = low - number * chunk_images, high - number * chunk_images
                if end > len(slots):
                    raise self._missing(np.arange(
                        max(low, number * chunk_images + len(slots)), high))
                images[row0 + here.start:row0 + here.stop] = chunk.pixels[start:end]
                labels[here] = chunk.labels[start:end]
                positions = slice(start, end)
            else:
                positions, found = _positions(chunk, np.arange(low, high) % chunk_images)
                if not found.all():
                    raise self._missing(np.arange(low, high)[~found])
                images[row0 + here.start:row0 + here.stop] = chunk.pixels[positions]
                labels[here] = chunk.labels[positions]
            if chunk.checksums is not None:
                checksums[here] = chunk.checksums[positions]
            else:
                if legacy is None:
                    legacy = np.zeros(count, bool)
                legacy[here] = True
        return labels, checksums, legacy

    def _read_grouped(self, txn, ids, chunk_images, images, rows):
        """Ids that fall many per value (a scan): one parse and one gather per value.
        (labels, stored checksums, None or where legacy values were checked whole)."""
        labels = np.empty(len(ids), np.int64)
        checksums = np.empty(len(ids), np.uint64)
        legacy = None
        for group, number, value in self._values(txn, ids, chunk_images):
            if value is None:
                raise self._missing(ids[group])
            chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
            positions, found = _positions(chunk, ids[group] % chunk_images)
            if not found.all():
                raise self._missing(ids[group][~found])
            _gather(chunk.pixels, positions, images, rows[group])
            labels[group] = chunk.labels[positions]
            if chunk.checksums is not None:
                checksums[group] = chunk.checksums[positions]
            else:
                if legacy is None:
                    legacy = np.zeros(len(ids), bool)
                legacy[group] = True
        return labels, checksums, legacy

    def _values(self, txn, ids, chunk_images):
        """Per value the ids fall in: (their positions in ``ids``, its number, the value or
        None); one LMDB lookup per value."""
        chunk_numbers = ids // chunk_images
        order = np.argsort(chunk_numbers, kind="stable") if len(ids) > 1 else np.zeros(1, int)
        for start, stop in _runs(chunk_numbers[order]):
            group = order[start:stop]
            number = int(chunk_numbers[group[0]])
            yield group, number, txn.get(_KEY.pack(number), db=self._chunks_db)

    def _lookup(self, txn, ids):
        """Per value the ids fall in: (their positions in ``ids``, the chunk, their
        positions in the chunk, which are there)."""
        chunk_images = self._chunk_size(txn)
        for group, number, value in self._values(txn, ids, chunk_images):
            if value is None:
                yield group, None, None, np.zeros(len(group), bool)
                continue
            chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
            yield group, chunk, *_positions(chunk, ids[group] % chunk_images)

    def _ids(self):
        parts = []
        if self._empty():
            return np.zeros(0, np.int64)
        with self._reading() as txn:
            chunk_images = self._chunk_size(txn)
            for key, value in txn.cursor(db=self._chunks_db):
                number = _KEY.unpack(bytes(key))[0]
                chunk = Chunk.parse(value, self.image_shape, self._where(number), number)
                parts.append(chunk.slots.astype(np.int64) + number * chunk_images)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _count(self):
        """The images in every chunk, from their headers: the ``count`` value in ``meta``
        has no check of its own, and a damaged one must not change len()."""
        if self._empty():
            return 0
        with self._reading() as txn:
            return sum(Chunk.count_in(value, self.image_shape, self._where(
                _KEY.unpack(bytes(key))[0])) for key, value in txn.cursor(db=self._chunks_db))

    def _contains_many(self, ids):
        held = np.zeros(len(ids), bool)
        with self._reading() as txn:
            if self._empty():
                return held
            for group, _chunk, _positions, found in self._lookup(txn, ids):
                held[group] = found
        return held

    def _max_id(self):
        with self._reading() as txn:
            cursor = txn.cursor(db=self._chunks_db)
            if not cursor.last():
                return None
            number = _KEY.unpack(bytes(cursor.key()))[0]
            chunk = Chunk.parse(cursor.value(), self.image_shape, self._where(number), number)
            return number * self._chunk_size(txn) + int(chunk.slots[-1])

    def _next_id_in(self, txn) -> int:
        """The next automatic id, read inside the writer's own transaction."""
        if self._chunks_db is None:
            return 0
        cursor = txn.cursor(db=self._chunks_db)
        if not cursor.last():
            return 0
        number = _KEY.unpack(bytes(cursor.key()))[0]
        chunk = Chunk.parse(cursor.value(), self.image_shape, self._where(number), number)
        return number * self._chunk_size(txn) + int(chunk.slots[-1]) + 1


def _positions(chunk: Chunk, slots: np.ndarray):
    """(positions of ``slots`` in ``chunk``, which of them it holds)."""
    positions = np.minimum(np.searchsorted(chunk.slots, slots), len(chunk.slots) - 1)
    return positions, chunk.slots[positions] == slots


def _distinct(values: np.ndarray) -> int:
    """How many different values: a set for a shard's few ids costs a fifth of np.unique."""
    return len(set(values.tolist())) if len(values) <= 64 else len(np.unique(values))


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
