"""HDF5: one resizable images dataset in native uint8, labels, ids and checksums beside it.

Layout of a store directory::

    store.json    {"format": "image-store", "backend": "hdf5", "image_shape": [H, W, C], ...}
    images.h5     HDF5 1.10 file format (what SWMR needs; HDF5 >= 1.10 reads it)
      /images     uint8 (N, H, W, C), chunks of whole images (at most 1 MiB), resizable
      /labels     int64 (N,)
      /checksums  uint64 (N,): of id, label and pixels (see ``storage.core.checksums``)
      /ids        int64 (N,): row i holds the id of images[i] and labels[i]

``/ids`` is the commit record: its length is the number of committed images.
A batch is written to ``/images``, ``/labels`` and ``/checksums`` and flushed, and
only then does ``/ids`` grow, so rows past its length are leftovers of an
interrupted write: ignored, and written over by the next batch. Overwrites
rewrite rows in place. Plain h5py reads it:
``h5py.File(".../images.h5", "r", swmr=True)["images"][:100]``.

What survives a crash. The file is written in SWMR mode (single writer,
multiple readers): HDF5 then orders its metadata writes so that the file on
disk is readable at every instant. That lets readers in other processes read
while a writer appends, and it is why a killed writer leaves a readable file.
A new store's first batch goes into a new file that is renamed into place. A
killed writer leaves HDF5's "open for writing" flags set, and at times an
end-of-file address short of the space it used; the next writer repairs both,
as ``h5clear -s --increment`` would (it holds the store's writer lock, so the
old writer is gone). Every acknowledged batch survives a kill, whole or not at
all. An overwrite cut short by a kill can leave the overwritten images torn:
their checksum reports that as CorruptStoreError, never as pixels, until they
are written again. A full disk is refused before the batch is written where the
free space shows it; a write that fails inside HDF5 anyway leaves this object
reopening the file as after a kill. A reader that opens the file between such
a failure and the writer's next open may get CorruptStoreError: HDF5 refuses a
file shorter than its header says, and only a writer extends it.
HDF5 does not fsync; ``durable`` stores fsync after each ``write_many`` and at close,
and also after a batch's rows, before ``/ids`` grows: a power loss may otherwise
write back the grown ``/ids`` without the rows it commits.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import struct
import time
import weakref
from dataclasses import dataclass, field
from typing import ClassVar

import h5py
import imagecodecs
import numpy as np
# The lock h5py holds around each of its calls into HDF5 (not public, stable since h5py 2.x).
from h5py._objects import phil as _hdf5_library_lock

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts, PowerLoss
from storage.core.checksums import image_checksum, image_checksums, verify_checksums
from storage.errors import CorruptStoreError, ReadOnlyError, StorageFullError, StoreError
from storage.core.files import WriterLock, fsync_directory, storage_looks_full, translate_os_error
from storage.core.handles import in_forked_child
from storage.core.row_index import RowIndex

FILE = "images.h5"
# Per chunk HDF5 makes one index lookup and one system call: 1 MiB chunks read a
# 256 px scan 1.7x faster than 192 KiB ones, and write it 1.3x faster (a 32 px scan
# reads 1.5x faster). A single image is still read alone (no chunk cache for readers);
# a writer's default 1 MiB cache holds the chunk it appends to. Stores made with other
# chunk shapes read the same: the shape is the file's.
_CHUNK_BYTES = 1024 * 1024
_CACHE_SLOTS = 521  # HDF5's default; with no cache bytes the count does not matter
_SPAN_FACTOR = 4  # read a covering range when it is at most this many times the rows asked
_LIBVER = ("v110", "latest")  # the oldest file format that supports SWMR
_ROW_DATASETS = ("images", "labels", "checksums")  # written and flushed before "ids" commits them
_H5PY_ERRORS = (KeyError, OSError, ValueError, RuntimeError)  # what h5py raises on bad files
_ROOM = _CHUNK_BYTES + 256 * 1024  # room a batch may need beyond its bytes: a chunk begun, metadata
_VERIFY_ATTEMPTS = 6  # re-reads of rows an overwrite may be rewriting: about 60 ms in all
_READ_ATTEMPTS = 24  # retries of a metadata read that fails its checksum: about 20 ms in all
_writers = weakref.WeakSet()  # stores open for writing in this process
# What HDF5 says of a file whose "open for writing" flags a writer left behind, one
# that a power loss cut off before those flags reached the disk as a SWMR writer's.
_WRITER_MARKS = ("h5clear", "not already open for SWMR writing")


@dataclass
class _SharedFile:
    """This process's one read handle on a file, and its datasets, for every store object."""
    path: str  # real path
    file: h5py.File
    datasets: dict = field(default_factory=dict)
    users: int = 0


_readers: dict[str, _SharedFile] = {}  # by real path


def read_plainly(path) -> dict[int, tuple[np.ndarray, int]]:
    """id -> (image, label), read with plain h5py as the layout above says."""
    with h5py.File(path / FILE, "r") as file:
        keys = file["ids"][:]  # the commit record: rows past its length do not count
        pixels, values = file["images"][:len(keys)], file["labels"][:len(keys)]
    return {int(key): (image, int(label)) for key, image, label in zip(keys, pixels, values)}


class Hdf5Backend(Backend):
    name = "hdf5"
    capabilities = Capabilities(encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.hdf5_encoded:EncodedHdf5Backend"
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,  # /ids grows once per batch, after the rows are flushed
        torn_overwrites=True,  # rows are rewritten in place; checksums report torn ones
        data_file=FILE, write_calls="pwrite64",
        syscall_kills=tuple(range(1, 61, 3)),  # some 8 writes to images.h5 per commit
        crash_points=(("hdf5-before-flush", 2), ("hdf5-after-flush", 1), ("hdf5-after-flush", 4),
                      ("before-rename", 1), ("before-rename", 2), ("in-fsync", 1)),
        rolls_back_when_damaged=False,
        file_size_limit=2_000_000,
        power_loss=PowerLoss(not_durable_loses=(
            "batches not yet written back; metadata rewritten in place can leave a file "
            "that fails to open (CorruptStoreError)")),
    )

    # h5py's file-creation keywords for a new images.h5 (the encoded layout pages it).
    _creation: ClassVar[dict] = {}

    def _open(self, create: bool) -> None:
        self._file_path = self.path / FILE
        self._shared = None
        self._writer_lock = None
        if self.mode != "r":
            self._writer_lock = WriterLock(self.path)
            _writers.add(self)
        # A store whose creation was cut short holds nothing: readers see it empty,
        # the next writer finishes creating it.
        unfinished = not self._file_path.exists() and self._read_marker_shape() is None
        try:
            if create or (unfinished and self.mode != "r"):
                _write_new_file(self._file_path, None, self.durable, **self._creation)
            self._file = None if unfinished and self.mode == "r" else self._open_file()
        except BaseException:
            self._release_writer_lock()
            raise
        try:
            self._load_index()
        except BaseException:
            self._close()
            raise

    def _open_file(self) -> h5py.File:
        """The file in SWMR mode: read while a writer appends, write while others read."""
        self._one_image_space = None
        # Datasets stay open with the file: closing one flushes its chunks, and h5py
        # would swallow a failure there (a full disk) and leave HDF5 in a state that
        # may crash the next flush.
        self._datasets: dict[str, h5py.Dataset] = {}
        self._shared, self._behind = None, False
        path = self._file_path
        access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        access.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_LATEST)
        # HDF5's own lock would keep readers and the writer apart; SWMR needs no lock
        # for that, and WriterLock keeps writers to one.
        access.set_file_locking(False, False)
        _limit_read_attempts(access)
        try:
            if self.mode == "r":
                shared = _readers.get(os.path.realpath(path))
                if shared is not None:
                    return self._share(shared)
                flags = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
                # No chunk cache: HDF5 then reads just the rows asked for, where through
                # its 1 MiB cache a random image pulled in its whole chunk (single
                # reads 2-3x slower; scans, read twice over, slower too).
                access.set_cache(0, _CACHE_SLOTS, 0, 0.75)
            else:
                _remove_if_present(_new_file_path(path))  # the rest of a killed first batch
                _recover_from_killed_writer(path)
                flags = h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE
            file = h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=access))
            if self.mode == "r":
                shared = _readers[os.path.realpath(path)] = _SharedFile(os.path.realpath(path),
                                                                        file)
                return self._share(shared)
            return file
        except FileNotFoundError:
            raise CorruptStoreError(
                f"the HDF5 store at '{self.path}' has no {FILE}; it is damaged") from None
        except _H5PY_ERRORS as error:
            translated = translate_os_error(error, self.path)
            if translated is not error:
                raise translated from error
            if any(text in str(error) for text in _WRITER_MARKS):
                raise CorruptStoreError(
                    f"'{path}' is marked as open for writing by a writer that never closed "
                    "it (a power loss with durable=False); open the store once with "
                    "mode='a', which clears the mark as h5clear -s does") from error
            if "already open" in str(error):
                raise ReadOnlyError(
                    f"'{path}' is open in this process with other access; close the other "
                    "store objects on it first") from error
            raise CorruptStoreError(f"cannot open '{path}' as HDF5: {error}") from error

    def _share(self, shared: _SharedFile) -> h5py.File:
        """Read through this process's one handle on the file and its datasets.

        HDF5 opens a file only once per process anyway; SWMR readers must then also
        share the dataset handles, or refreshing one (to see new images) breaks reads
        through the others ("can't insert duplicate key").
        """
        self._behind = shared.users > 0  # opened earlier: refresh it to see what came since
        shared.users += 1
        self._shared, self._datasets = shared, shared.datasets
        return shared.file

    def _dataset(self, name: str) -> h5py.Dataset:
        dataset = self._datasets.get(name)
        if dataset is None:
            dataset = self._datasets[name] = self._file[name]
        return dataset

    def _load_index(self) -> None:
        try:
            if self._file is None or "ids" not in self._file:
                self._index = RowIndex(np.zeros(0, np.int64))
                self._labels, self._checksums = np.zeros(0, np.int64), np.zeros(0, np.uint64)
                return
            if self.mode == "r" and self._behind:
                for name in ("ids", *_ROW_DATASETS):
                    self._dataset(name).refresh()
            ids = self._dataset("ids")[:]
            count = len(ids)
            labels = self._dataset("labels")[:count]
            checksums = self._dataset("checksums")[:count]
            stored_rows = self._dataset("images").shape[0]
        except _H5PY_ERRORS as error:
            raise CorruptStoreError(f"the HDF5 store at '{self.path}' is damaged: {error}") from error
        if min(len(labels), len(checksums), stored_rows) < count:
            raise CorruptStoreError(
                f"the HDF5 store at '{self.path}' has {count} ids but only {len(labels)} labels, "
                f"{len(checksums)} checksums and {stored_rows} images; it is damaged")
        self._index, self._labels = RowIndex(ids), labels.astype(np.int64)
        self._checksums = checksums

    def _close(self) -> None:
        try:
            if self._shared is not None:
                self._shared.users -= 1
                if self._shared.users == 0:
                    _forget_reader(self._shared)
            elif self._file is not None:
                self._file.close()
        finally:
            self._release_writer_lock()

    def _release_writer_lock(self) -> None:
        _writers.discard(self)
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def _after_fork(self) -> None:
        # _disarm_in_child closed the files this child inherited (a writer's through
        # /dev/null); open the file afresh (HDF5 would otherwise hand back the copy).
        self._open(create=False)

    # ---- writing -------------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        rows, found = self._index.rows(ids)
        # HDF5 may crash when a file whose write failed half way is closed, so a full
        # disk is best refused before anything is written (see _reopened_after_failure).
        if storage_looks_full(self._file_path, images.nbytes + 24 * len(ids) + _ROOM):
            raise StorageFullError(
                f"no room for {len(ids)} more images in the store at '{self.path}': the disk "
                "or the file-size limit is (nearly) reached; what was committed before is "
                "intact: free space and write again")
        checksums = image_checksums(ids, labels, images)
        if "ids" not in self._file:
            self._write_first_batch(ids, images, labels, checksums)
            return
        with self._reopened_after_failure():
            self._write_rows(ids, images, labels, checksums, rows, found)

    def _write_rows(self, ids, images, labels, checksums, rows, found) -> None:
        if found.any():
            order = np.argsort(rows[found])  # h5py writes lists of rows in increasing order
            for name, values in zip(_ROW_DATASETS, (images, labels, checksums)):
                self._dataset(name)[rows[found][order]] = values[found][order]
        new = ~found
        if new.any():
            new_ids, new_labels, new_checksums = ids, labels, checksums
            if found.any():  # boolean indexing copies: only pay for it when ids were mixed
                images, new_labels, new_ids = images[new], labels[new], ids[new]
                new_checksums = checksums[new]
            start, stop = len(self._index), len(self._index) + len(new_ids)
            for name, values in zip(_ROW_DATASETS, (images, new_labels, new_checksums)):
                dataset = self._dataset(name)
                if dataset.shape[0] < stop:  # it may be longer after an interrupted write
                    dataset.resize(stop, axis=0)
                dataset[start:stop] = values
            self._file.flush()  # the rows reach the file before the ids that commit them
            if self.durable:  # and the disk: a power loss may reorder unsynced writes
                os.fsync(self._file.id.get_vfd_handle())
            self._dataset("ids").resize(stop, axis=0)
            self._dataset("ids")[start:stop] = new_ids
        self._file.flush()
        # Committed: only now does this object believe it.
        self._labels[rows[found]] = labels[found]
        self._checksums[rows[found]] = checksums[found]
        if new.any():
            self._index = self._index.appended(new_ids)
            self._labels = np.concatenate([self._labels, new_labels])
            self._checksums = np.concatenate([self._checksums, new_checksums])

    @contextlib.contextmanager
    def _reopened_after_failure(self):
        """After a failed write, drop what HDF5 holds in memory and open the file afresh.

        That memory must never be flushed or closed normally (HDF5 can crash doing
        it), so it goes out through /dev/null; the file on disk is then what a killed
        writer leaves, and opens the same way. If it cannot be opened now (the disk is
        still full), this store object is closed.
        """
        try:
            yield
        except _H5PY_ERRORS:
            _close_through_devnull(self._file)
            try:
                self._file = self._open_file()
                self._load_index()
            except (StoreError, *_H5PY_ERRORS):
                self._file = None
                self._release_writer_lock()
                self._closed = True
            raise

    def _write_first_batch(self, ids, images, labels, checksums) -> None:
        """A new store's first batch: a whole new file, renamed over the empty one."""
        _write_new_file(self._file_path, functools.partial(
            _create_datasets, ids, images, labels, checksums), self.durable)
        self._file.close()
        self._file = self._open_file()
        self._load_index()

    def _sync(self) -> None:
        with self._reopened_after_failure():
            self._file.flush()
        os.fsync(self._file.id.get_vfd_handle())  # flush() only hands the data to the OS

    # ---- reading -------------------------------------------------------------------------
    def _read_one(self, key):
        row = self._index.row(key)
        if row is None:
            raise self._missing([key])
        image = self._reading(self._read_row, row)
        label = int(self._labels[row])
        if image_checksum(key, label, image[0]) != self._checksums[row]:
            label = int(self._verified(np.array([key], np.int64), slice(row, row + 1), image)[0])
        return image[0], label

    def _read_row(self, row: int) -> np.ndarray:
        # The low-level read skips h5py's slicing machinery, several times the read itself.
        dataset_id, file_space, image_space = self._one_image_read()
        file_space.select_hyperslab((row, 0, 0, 0), (1, *self.image_shape))
        image = np.empty((1, *self.image_shape), np.uint8)
        dataset_id.read(image_space, file_space, image)
        return image

    def _read_rows_one_by_one(self, rows, images) -> None:
        dataset_id, file_space, image_space = self._one_image_read()
        for i, row in enumerate(rows):
            file_space.select_hyperslab((row, 0, 0, 0), (1, *self.image_shape))
            dataset_id.read(image_space, file_space, images[i:i + 1])

    def _one_image_read(self):
        """The images dataset, its file space (as long as it holds now) and one image's space."""
        dataset = self._dataset("images")
        if self._one_image_space is None:
            self._one_image_space = h5py.h5s.create_simple((1, *self.image_shape))
        return dataset.id, dataset.id.get_space(), self._one_image_space

    def _read_many(self, ids):
        rows, found = self._index.rows(ids)
        if not found.all():
            raise self._missing(ids[~found])
        images = self._reading(self._read_rows, rows)
        return images, self._verified(ids, rows, images)

    def _reading(self, read, rows):
        """``read(rows)``; what h5py raises becomes CorruptStoreError."""
        try:
            return read(rows)
        except _H5PY_ERRORS as error:
            raise CorruptStoreError(f"cannot read images from {self._where()}: {error}") from error

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        images = np.empty((len(rows), *self.image_shape), np.uint8)
        dataset = self._dataset("images")
        first, last = int(rows.min()), int(rows.max())
        if last - first == len(rows) - 1 and np.all(np.diff(rows) == 1):
            dataset.read_direct(images, np.s_[first:last + 1])
        elif last - first + 1 <= _SPAN_FACTOR * len(rows):
            span = np.empty((last - first + 1, *self.image_shape), np.uint8)
            dataset.read_direct(span, np.s_[first:last + 1])
            np.take(span, rows - first, axis=0, out=images)
        else:
            self._read_rows_one_by_one(rows.tolist(), images)
        return images

    def _verified(self, ids, rows, images) -> np.ndarray:
        """The labels of ``rows``, once the images read from them pass their checksums.

        Overwrites rewrite rows in place, so a read that meets one (another thread of
        this object, another store object or process) can see new pixels with the old
        checksum, or half-written pixels: such rows are read again, labels and checksums
        from the file, a few times over some milliseconds. Damage stays damage.
        """
        rows = np.asarray(np.arange(len(self._labels))[rows])
        labels, checksums = self._labels[rows], self._checksums[rows]
        for attempt in range(_VERIFY_ATTEMPTS):
            bad = image_checksums(ids, labels, images) != checksums
            if not bad.any():
                return labels
            time.sleep(0.001 * 2**attempt)
            try:
                fresh_labels, fresh_checksums = self._reread_rows(rows[bad])
                images[bad] = self._reading(self._read_rows, rows[bad])
            except (StoreError, *_H5PY_ERRORS):
                break
            labels[bad], checksums[bad] = fresh_labels, fresh_checksums
        verify_checksums(ids, labels, images, checksums, self._where())
        return labels

    def _reread_rows(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Labels and checksums of ``rows`` as the file holds them now."""
        unique, inverse = np.unique(rows, return_inverse=True)
        fresh = []
        for name in ("labels", "checksums"):
            dataset = self._dataset(name)
            if self.mode == "r":
                dataset.refresh()
            fresh.append(dataset[unique.tolist()][inverse])
        if self.mode == "r":
            self._dataset("images").refresh()
            self._labels[rows], self._checksums[rows] = fresh
        return fresh[0].astype(np.int64), fresh[1]

    def _where(self) -> str:
        return f"the HDF5 store at '{self.path}'"

    def _ids(self):
        return self._index.sorted_ids

    def _count(self):
        return len(self._index)

    def _contains_many(self, ids):
        return self._index.rows(ids)[1]

    def _max_id(self):
        return self._index.max_id


def _new_file_path(path):
    return path.with_name(path.name + ".new")


def _create_datasets(ids, images, labels, checksums, file: h5py.File) -> None:
    """A first batch's datasets, in a new file."""
    shape = images.shape[1:]
    chunk_rows = max(1, _CHUNK_BYTES // int(np.prod(shape)))
    file.create_dataset("images", data=images, maxshape=(None, *shape),
                        chunks=(chunk_rows, *shape))
    create_row_datasets(file, labels=labels, checksums=checksums, ids=ids)


def create_row_datasets(file: h5py.File, **rows) -> None:
    """One resizable int dataset per keyword: values per row, ``ids`` the commit record."""
    for name, values in rows.items():
        file.create_dataset(name, data=values, maxshape=(None,), chunks=(16384,))


def _write_new_file(path, fill, durable: bool, **creation) -> None:
    """Write a complete file beside ``path`` and rename it into place: never half a file.

    ``fill(file)`` creates the datasets of a first batch; None leaves the file empty.
    ``creation``: h5py's file-creation keywords (``fs_strategy``, ...).
    """
    new_path = _new_file_path(path)
    try:
        # No chunk cache: each dataset is written whole, once, so chunks go straight to
        # the file instead of through the cache: the datasets of a first batch of 1,000
        # 32 px images are written in half the time.
        file = h5py.File(new_path, "w", libver=_LIBVER, locking=False, rdcc_nbytes=0,
                         **creation)
        try:
            if fill is not None:
                fill(file)
            file.close()
        except BaseException:
            _close_through_devnull(file)
            raise
        if durable:
            with open(new_path, "rb+") as written:
                os.fsync(written.fileno())
    except BaseException:
        _remove_if_present(new_path)
        raise
    os.replace(new_path, path)
    if durable:
        fsync_directory(path.parent)


def _remove_if_present(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# Superblock versions 2 and 3 (HDF5 file format specification, "Superblock"): signature,
# version, sizes of offsets and lengths, status flags, base / extension / end-of-file /
# root addresses, checksum.
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SUPERBLOCK = struct.Struct("<8sBBBBQQQQI")
_WRITER_FLAGS = 0x1 | 0x4  # open for writing, open for SWMR writing
_RECOVERY_ROOM = 1024**2  # what h5clear --increment adds by default


def _recover_from_killed_writer(path) -> None:
    """Undo what a killed writer leaves: its status flags, and an end of file address
    short of the space its last flush had already used.

    ``h5clear -s --increment`` does the same: clear the flags, and move the end to
    past both the old end and the file's length (by 1 MiB, never-used room). Called
    only under the store's writer lock, so the writer that set the flags is gone.
    """
    with open(path, "rb+") as file:
        raw = file.read(_SUPERBLOCK.size)
        if len(raw) < _SUPERBLOCK.size:
            return  # h5py says what is wrong with it
        (signature, version, offset_size, length_size, flags, base, extension, end,
         root, checksum) = _SUPERBLOCK.unpack(raw)
        if signature != _SIGNATURE or version not in (2, 3) or offset_size != 8:
            return
        if imagecodecs.h5checksum_metadata(raw[:-4]) != checksum:
            return  # damaged: h5py will refuse it
        if flags & _WRITER_FLAGS:
            end = max(end, os.fstat(file.fileno()).st_size - base) + _RECOVERY_ROOM
            cleared = _SUPERBLOCK.pack(signature, version, offset_size, length_size,
                                       flags & ~_WRITER_FLAGS, base, extension, end, root, 0)
            file.seek(0)
            file.write(cleared[:-4] + struct.pack("<I", imagecodecs.h5checksum_metadata(
                cleared[:-4])))
        # Space HDF5 had reserved at the end but not yet written (a full disk, a kill).
        if os.fstat(file.fileno()).st_size < base + end:
            os.ftruncate(file.fileno(), base + end)


def _disarm_in_child() -> None:
    """In a forked child: the parent's writable files must never be written from here.

    A close (even at exit) flushes and truncates the file to what this copy of the
    library believes, under the parent's feet. Point the child's copies of their file
    descriptors at /dev/null and close them there.
    """
    for store in list(_writers):
        if getattr(store, "_file", None) is not None:
            _close_through_devnull(store._file)
        store._release_writer_lock()
    for shared in list(_readers.values()):
        _forget_reader(shared)


def _limit_read_attempts(access) -> None:
    """Let SWMR readers and writers re-read metadata that fails its checksum a few times,
    not 100 (a writer opening a file a power loss tore would otherwise hang).

    Each retry waits twice as long as the last: HDF5's default of 100 turns one
    damaged byte into a hang. h5py does not wrap the setting; its own modules link
    the HDF5 library, where ctypes finds it. The call holds h5py's library lock, as
    every h5py call does: this HDF5 build is not thread-safe, and a call beside
    another thread's read broke HDF5's tables (wrong errors, then a crash).
    """
    setter = _read_attempts_setter()
    if setter is not None:
        with _hdf5_library_lock:
            setter(access.id, _READ_ATTEMPTS)


@functools.cache
def _read_attempts_setter():
    try:
        setter = ctypes.CDLL(h5py.h5p.__file__).H5Pset_metadata_read_attempts
    except (OSError, AttributeError):
        return None
    setter.argtypes, setter.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
    return setter


def _forget_reader(shared: _SharedFile) -> None:
    if _readers.get(shared.path) is shared:
        del _readers[shared.path]
    try:
        shared.file.close()
    except _H5PY_ERRORS:
        pass  # closed already


def _close_through_devnull(file: h5py.File) -> None:
    """Close ``file`` with every write of the close going to /dev/null, none to the file."""
    devnull = os.open(os.devnull, os.O_RDWR)  # writes must succeed, or HDF5 may crash later
    try:
        os.dup2(devnull, file.id.get_vfd_handle())
        file.close()
    except _H5PY_ERRORS:
        pass  # closed already, or the close complained: its writes went nowhere anyway
    finally:
        os.close(devnull)


in_forked_child(_disarm_in_child)
