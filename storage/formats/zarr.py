"""Zarr v3 with the sharding codec: images in inner chunks of ~256 inside shards of ~16,384.

Layout of a store directory::

    store.json        {"format": "image-store", "backend": "zarr", "image_shape": [H, W, C], ...}
    data.zarr/        a Zarr v3 group; attribute "committed": rows committed (the commit record)
      images          uint8 (rows, H, W, C): inner chunks of ~768 KiB of whole images (256
                      CIFAR images) inside shards of 64 chunks; no compressor, CRC-32C on
                      each shard's index
      labels          int64 (rows,)
      checksums       uint64 (rows,): of id, label and pixels (see ``storage.core.checksums``)
      ids             int64 (rows,): row i holds the id of images[i], labels[i]

Rows are only ever appended: an overwrite appends the new rows, and the newest
row of an id is the one that counts. ``committed`` is the commit record: a
write resizes the arrays and writes its rows past it, and only then raises it;
rows at or past it are leftovers of a cut write, never read, and written over
by the next one. Each file (chunk, shard, metadata) is written as
``<file>.partial`` and renamed into place, so a kill leaves every file old or
new, never half written; the next writer removes the ``*.partial`` files.
Plain zarr reads it::

    group = zarr.open_group(".../data.zarr", mode="r")
    count = group.attrs["committed"]
    group["images"][:count], group["ids"][:count]   # the last row of an id wins

``durable`` stores fsync each file before renaming it, and its directory
after, so the rows are on disk before the commit record that counts them.
A ``write_one`` rewrites the shard it lands in (up to ~48 MiB of CIFAR
images): correct, but write batches where you can.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import zarr
import zarr.errors
from zarr.storage import LocalStore

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.checksums import image_checksum, image_checksums, verify_checksums
from storage.core.facts import FormatFacts, PowerLoss
from storage.core.files import WriterLock, fsync_directory
from storage.errors import CorruptStoreError, StoreError
from storage.formats.latest_rows import LatestRows

GROUP = "data.zarr"
CHUNK_BYTES = 768 * 1024  # 256 CIFAR images
CHUNKS_PER_SHARD = 64
INDEX_CHUNK_ROWS = 65536
_COLUMNS = {"labels": np.int64, "checksums": np.uint64, "ids": np.int64}
# What zarr-python raises on damaged metadata or chunks (its own errors are ValueErrors;
# numcodecs' decompressors raise RuntimeError).
_ZARR_ERRORS = (ValueError, KeyError, TypeError, IndexError, OSError, AttributeError,
                RuntimeError, json.JSONDecodeError, zarr.errors.BaseZarrError)


def read_plainly(path) -> dict[int, tuple[np.ndarray, int]]:
    """The store read with zarr alone, following the layout above (for the tests)."""
    group = zarr.open_group(str(path / GROUP), mode="r")
    count = group.attrs["committed"]
    if not count:
        return {}
    images, labels, ids = (group[name][:count] for name in ("images", "labels", "ids"))
    return {int(key): (image, int(label)) for key, image, label in zip(ids, images, labels)}


def chunk_rows_for(image_shape) -> int:
    return max(1, CHUNK_BYTES // int(np.prod(image_shape)))


class ZarrBackend(Backend):
    name = "zarr"
    capabilities = Capabilities(overwrite=True, write_one=True, encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.zarr_encoded:EncodedZarrBackend"
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,  # rows count from the commit record's one update
        torn_overwrites=False,  # overwrites append rows too
        # The first shard of the images, as written before its rename into place.
        data_file=f"{GROUP}/images/c/0/0/0/0.partial", write_calls="write,writev,pwrite64",
        syscall_kills=tuple(range(1, 9)),
        crash_points=(("in-fsync", 1), ("in-fsync", 6), ("in-fsync", 11)),
        rolls_back_when_damaged=False,
        # A write_one rewrites its shard: a small limit keeps filling it linear, not slow.
        file_size_limit=150_000,
        power_loss=PowerLoss(not_durable_loses=(
            "chunks and commit records not yet written back; a file renamed into place "
            "before its bytes reached the disk fails to open (CorruptStoreError)")),
    )

    def _open(self, create: bool) -> None:
        self._writer_lock = WriterLock(self.path) if self.mode != "r" else None
        self._group = None
        self._arrays = {}
        self._rows = LatestRows(np.zeros(0, np.int64))
        self._labels, self._checksums = np.zeros(0, np.int64), np.zeros(0, np.uint64)
        try:
            self._attach()
        except BaseException:
            self._close()
            raise

    def _attach(self) -> None:
        """Open the group and load the index; a writer first repairs what a kill left."""
        root = self.path / GROUP
        exists = (root / "zarr.json").exists()
        if not exists and (self._read_marker_shape() is not None or _holds_arrays(root)):
            raise CorruptStoreError(f"the zarr store at '{self.path}' holds images but has no "
                                    f"{GROUP}/zarr.json; it is damaged: restore it from a copy")
        if self.mode != "r":
            _remove_partial_files(root)
            if not exists:
                zarr.create_group(self._zarr_store(root), attributes={"committed": 0},
                                  overwrite=True)
                exists = True
        if not exists:
            return  # a store whose creation was cut short holds nothing
        try:
            self._group = zarr.open_group(self._zarr_store(root),
                                          mode="r" if self.mode == "r" else "r+")
            committed = self._group.attrs["committed"]
            if not isinstance(committed, int) or committed < 0:
                raise CorruptStoreError(f"the commit record of '{root}' reads {committed!r}")
            if committed:
                self._load(committed)
        except CorruptStoreError:
            raise
        except _ZARR_ERRORS as error:
            raise self._damaged(error) from error

    def _zarr_store(self, root) -> "FileStore":
        return FileStore(root, read_only=self.mode == "r", durable=self.durable)

    def _load(self, committed: int) -> None:
        self._arrays = {name: self._group[name] for name in ("images", *_COLUMNS)}
        for name, array in self._arrays.items():
            if array.shape[0] < committed:
                raise CorruptStoreError(f"'{name}' holds {array.shape[0]} rows, fewer than the "
                                        f"{committed} committed")
        if self._arrays["images"].shape[1:] != self.image_shape:
            raise CorruptStoreError(f"'images' holds images of shape "
                                    f"{self._arrays['images'].shape[1:]}, not {self.image_shape}")
        columns = {name: np.asarray(self._arrays[name][:committed], dtype) for name, dtype in
                   _COLUMNS.items()}
        self._rows = LatestRows(columns["ids"])
        self._labels, self._checksums = columns["labels"], columns["checksums"]

    def _damaged(self, error: Exception) -> CorruptStoreError:
        return CorruptStoreError(f"cannot read the zarr store at '{self.path}' ({error!r}); "
                                 "it is damaged: restore it from a copy")

    def _close(self) -> None:
        self._group, self._arrays = None, {}
        if getattr(self, "_writer_lock", None) is not None:
            self._writer_lock.release()
            self._writer_lock = None

    # ---- writing -------------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        # Held ids were refused by the base class (Backend._refuse_held) before this call.
        checksums = image_checksums(ids, labels, images)
        if not self._arrays:
            self._create_arrays(images.shape[1:])
        start = self._rows.rows_held
        stop = start + len(ids)
        for name, values in (("images", images), ("labels", labels), ("checksums", checksums),
                             ("ids", ids)):
            array = self._arrays[name]
            if array.shape[0] < stop:  # it may be longer after a cut write
                array.resize((stop, *array.shape[1:]))
            array[start:stop] = values
        self._group.attrs["committed"] = stop  # the files above are on disk (durable stores)
        # Committed: only now does this object believe it.
        self._rows = self._rows.appended(ids)
        self._labels = np.concatenate([self._labels, labels])
        self._checksums = np.concatenate([self._checksums, checksums])

    def _create_arrays(self, image_shape) -> None:
        """The arrays, empty (any left by a cut first write are replaced)."""
        chunk = chunk_rows_for(image_shape)
        self._arrays = {"images": self._group.create_array(
            "images", shape=(0, *image_shape), dtype="uint8", chunks=(chunk, *image_shape),
            shards=(chunk * CHUNKS_PER_SHARD, *image_shape), compressors=None, fill_value=0,
            overwrite=True)}
        for name, dtype in _COLUMNS.items():
            self._arrays[name] = self._group.create_array(
                name, shape=(0,), dtype=dtype, chunks=(INDEX_CHUNK_ROWS,), compressors=None,
                fill_value=0, overwrite=True)

    # ---- reading -------------------------------------------------------------------------
    def _read_one(self, key):
        row = self._rows.row(key)
        if row is None:
            raise self._missing([key])
        image = self._zarr_read(lambda: self._arrays["images"][row])
        label = int(self._labels[row])
        if image.shape != self.image_shape or (
                image_checksum(key, label, image) != self._checksums[row]):
            verify_checksums(np.array([key], np.int64), self._labels[[row]],
                             image.reshape(1, *self.image_shape), self._checksums[[row]],
                             self._where())
        return image, label

    def _read_many(self, ids):
        rows, found = self._rows.rows(ids)
        if not found.all():
            raise self._missing(ids[~found])
        images = self._arrays["images"]
        first, last = int(rows.min()), int(rows.max())
        if last - first + 1 == len(rows) and np.all(np.diff(rows) == 1):
            pixels = self._zarr_read(lambda: images[first:last + 1])
        else:
            wanted, positions = np.unique(rows, return_inverse=True)
            pixels = self._zarr_read(lambda: images.get_orthogonal_selection(wanted))[positions]
        if pixels.shape != (len(ids), *self.image_shape):
            raise self._damaged(ValueError(f"read {pixels.shape} pixels"))
        labels = self._labels[rows]
        verify_checksums(ids, labels, pixels, self._checksums[rows], self._where())
        return pixels, labels

    def _zarr_read(self, read):
        try:
            return read()
        except StoreError:
            raise
        except _ZARR_ERRORS as error:
            raise self._damaged(error) from error

    def _where(self) -> str:
        return f"the zarr store at '{self.path}'"

    def _ids(self):
        return self._rows.sorted_ids

    def _contains_many(self, ids):
        return self._rows.rows(ids)[1]

    def _max_id(self):
        return self._rows.max_id

    def _count(self):
        return len(self._rows)


class FileStore(LocalStore):
    """zarr's LocalStore, writing each file as ``<file>.partial`` renamed into place.

    A fixed temporary name (zarr's own has a random part) lets the next writer and
    a test name it; ``durable`` adds the fsyncs the rename needs to survive power loss.
    """

    def __init__(self, root, *, read_only: bool = False, durable: bool = True):
        super().__init__(root, read_only=read_only)
        self.durable = durable

    async def set(self, key: str, value) -> None:
        if not self._is_open:
            await self._open()
        self._check_writable()
        # On zarr's one I/O thread, not a new worker thread per file: the writes are
        # copies into the page cache, and one thread keeps their order plain to follow.
        _replace_file(self.root / key, value.as_buffer_like(), self.durable)


def _replace_file(path: Path, content, durable: bool) -> None:
    created = [parent for parent in reversed(path.parents) if not parent.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    try:
        with open(temporary, "wb") as file:
            file.write(content)
            if durable:
                file.flush()
                os.fsync(file.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    if durable:
        for directory in {path.parent, *(parent.parent for parent in created)}:
            fsync_directory(directory)


def _holds_arrays(root: Path) -> bool:
    """Whether the group holds arrays: a creation cut short leaves none (an encoded
    store's marker records no shape, so this is what tells its loss from that)."""
    return root.is_dir() and any(entry.is_dir() for entry in root.iterdir())


def _remove_partial_files(root) -> None:
    """Drop the temporary files of chunks a killed writer never renamed into place."""
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(".partial"):
                os.unlink(os.path.join(directory, name))
