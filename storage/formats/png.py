"""One PNG file per image, labels in one table beside them.

Layout of a store directory::

    store.json        {"format": "image-store", "backend": "png", "image_shape": [H, W, C], ...}
    labels.csv        header "id,label,file,crc", then one row per committed image;
                      crc: CRC-32 of the row's "id,label,file" text, 8 hex digits
    images/00000042.png         the image with id 42 (ids padded to 8 digits)
    images/00000042.1.png       id 42 after its first overwrite, and so on

``labels.csv`` is the commit record. Image files are written first and a batch's
rows are appended after them in one write, so a crash mid-batch leaves only
files that no row names: they are ignored, and deleted when the store is next
opened for writing. A row whose line was cut short by a crash (no newline) is
ignored too; a writer cuts it off. Later rows for an id replace earlier ones
(overwrites write a new file, so the old image stays valid until the new row
is committed). A killed ``write_many`` may leave a prefix of its rows
committed, each naming a whole image.

Images are PNGs stored without compression when even that fits in one
file-system block (CIFAR's 32x32x3: 3,172 bytes in a 4 KiB block, exactly the
disk a compressed file takes), zlib level 1 otherwise; see ``compression_for``.
Plain code reads it with ``csv`` and Pillow: ``Image.open(store / row["file"])``.
PNG's own CRCs and zlib's checksum catch damaged image bytes, the row CRC a
damaged id, label or file name.
"""
from __future__ import annotations

import os
import re
import zlib

import imagecodecs
import numpy as np

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.errors import CorruptStoreError
from storage.core.files import WriterLock, sync_filesystem, write_file_atomically
from storage.core.threads import for_each_slice
from storage.core.row_index import RowIndex

TABLE = "labels.csv"
HEADER = b"id,label,file,crc\n"
_UNCHECKED_HEADER = b"id,label,file\n"  # tables written before rows carried a CRC
IMAGES = "images"
# When compressing: level 1 files are within 1 % of level 9's size at a fraction of the time.
ZLIB_LEVEL = 1
# Signature, IHDR, IDAT and IEND chunks, zlib header and checksum around stored pixels.
_PNG_OVERHEAD = 63
_FILE_NAME = re.compile(rb"^images/(\d+)(?:\.(\d+))?\.png$")


class PngBackend(Backend):
    """``compression``: zlib level 0-9; by default 0 (stored) when an uncompressed PNG
    of the store's images still fits in one file-system block, else ``ZLIB_LEVEL``.
    """

    name = "png"
    capabilities = Capabilities(channels=(1, 2, 3, 4))  # grey, grey+alpha, RGB, RGBA

    def __init__(self, path, mode="r", *, durable=True, compression: int | None = None):
        if compression is not None and compression not in range(10):
            raise ValueError(f"compression must be a zlib level 0..9 or None, got {compression!r}")
        self._compression = compression
        super().__init__(path, mode, durable=durable)

    def __getstate__(self):
        return {**super().__getstate__(), "compression": self._compression}

    def _zlib_level(self) -> int:
        if self._compression is None:
            self._compression = compression_for(self.image_shape, os.statvfs(self.path).f_bsize)
        return self._compression

    def _open(self, create: bool) -> None:
        self._table = self.path / TABLE
        self._image_dir = self.path / IMAGES
        # One writer: two would interleave their rows, and one cuts off the other's.
        self._writer_lock = WriterLock(self.path) if self.mode != "r" else None
        try:
            self._open_table(create)
        except BaseException:
            self._close()
            raise

    def _open_table(self, create: bool) -> None:
        # A store whose creation was cut short holds nothing: readers see it empty,
        # the next writer finishes creating it.
        unfinished = not self._table.exists() and self._read_marker_shape() is None
        if create or (unfinished and self.mode != "r"):
            self._image_dir.mkdir(exist_ok=True)
            # A table is whole, header and all, even after a power loss.
            write_file_atomically(self._table, HEADER, temp_suffix=".new")
        if unfinished and self.mode == "r":
            ids, labels, files = np.zeros(0, np.int64), np.zeros(0, np.int64), []
        else:
            ids, labels, files = self._load_table()
        self._index = RowIndex(ids)
        self._labels = labels
        self._files = files
        if self.mode != "r":
            self._remove_uncommitted_files()

    def _close(self) -> None:
        if self._writer_lock is not None:
            self._writer_lock.release()

    # ---- the label table ---------------------------------------------------------------
    def _load_table(self):
        try:
            content = self._table.read_bytes()
        except FileNotFoundError:
            raise CorruptStoreError(
                f"the PNG store at '{self.path}' has no {TABLE}; it is damaged") from None
        self._checked_rows = content.startswith(HEADER)
        if not (self._checked_rows or content.startswith(_UNCHECKED_HEADER)):
            raise CorruptStoreError(f"'{self._table}' does not start with the header {HEADER!r}")
        header = HEADER if self._checked_rows else _UNCHECKED_HEADER
        # A last line without its newline was cut short by a crash: not committed. A
        # writer cuts it off, or the next row appended would be glued to it.
        committed = content.rfind(b"\n") + 1
        if committed < len(content) and self.mode != "r":
            os.truncate(self._table, committed)
        lines = content[len(header):committed].splitlines()
        latest: dict[int, tuple[int, bytes]] = {}
        for number, line in enumerate(lines, start=2):
            key, label, file = self._parse_row(line, number)
            latest[key] = (label, file)
        ids = np.fromiter(latest.keys(), dtype=np.int64, count=len(latest))
        labels = np.fromiter((row[0] for row in latest.values()), np.int64, len(latest))
        files = [row[1].decode() for row in latest.values()]
        return ids, labels, files

    def _parse_row(self, line: bytes, number: int) -> tuple[int, int, bytes]:
        if self._checked_rows:
            line, _, crc = line.rpartition(b",")
            if len(crc) != 8 or _row_crc(line) != crc:
                raise CorruptStoreError(
                    f"line {number} of '{self._table}' fails its CRC ({line[:80]!r}); "
                    "the table is damaged")
        fields = line.split(b",")
        match = _FILE_NAME.match(fields[2]) if len(fields) == 3 else None
        try:
            key, label = int(fields[0]), int(fields[1])
        except (ValueError, IndexError):
            match = None
        if match is None or int(match.group(1)) != key:
            raise CorruptStoreError(
                f"line {number} of '{self._table}' is not 'id,label,images/<id>.png': {line[:80]!r}")
        return key, label, fields[2]

    def _table_rows(self, ids, labels, files) -> bytes:
        rows = [f"{key},{label},{file}".encode() for key, label, file in zip(ids, labels, files)]
        if self._checked_rows:
            rows = [row + b"," + _row_crc(row) for row in rows]
        return b"\n".join(rows) + b"\n"

    def _append_rows(self, ids, labels, files) -> None:
        rows = self._table_rows(ids, labels, files)
        descriptor = os.open(self._table, os.O_WRONLY | os.O_APPEND)
        try:
            end = os.lseek(descriptor, 0, os.SEEK_END)
            try:
                _write_all(descriptor, rows)
            except OSError:
                os.ftruncate(descriptor, end)  # no half row left to swallow the next one
                raise
        finally:
            os.close(descriptor)

    def _remove_uncommitted_files(self) -> None:
        named = set(self._files)
        for entry in os.scandir(self._image_dir):
            if f"{IMAGES}/{entry.name}" not in named:
                os.unlink(entry.path)

    # ---- writing -----------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        rows, found = self._index.rows(ids)
        if found.any() and not overwrite:
            self._raise_duplicates(ids[found])
        files = [self._new_file_name(key, self._files[row] if was_there else None)
                 for key, row, was_there in zip(ids.tolist(), rows.tolist(), found.tolist())]

        root, level = str(self.path), self._zlib_level()

        def encode_and_write(start, stop):
            for i in range(start, stop):
                _write_file(os.path.join(root, files[i]),
                            imagecodecs.png_encode(images[i], level=level))

        for_each_slice(encode_and_write, len(ids))
        if self.durable:
            sync_filesystem(self.path)  # images reach the disk before the rows naming them
        self._append_rows(ids.tolist(), labels.tolist(), files)
        self._commit_in_memory(ids, labels, files, rows, found)

    def _new_file_name(self, key: int, previous: str | None) -> str:
        if previous is None:
            return f"{IMAGES}/{key:08d}.png"
        generation = _FILE_NAME.match(previous.encode()).group(2)
        return f"{IMAGES}/{key:08d}.{int(generation or 0) + 1}.png"

    def _commit_in_memory(self, ids, labels, files, rows, found) -> None:
        for i in np.flatnonzero(found):
            os.unlink(self.path / self._files[rows[i]])  # superseded, committed elsewhere now
            self._files[rows[i]] = files[i]
            self._labels[rows[i]] = labels[i]
        new = ~found
        if new.any():
            self._index = self._index.appended(ids[new])
            self._labels = np.concatenate([self._labels, labels[new]])
            self._files.extend(file for file, is_new in zip(files, new) if is_new)

    def _sync(self) -> None:
        with open(self._table, "ab") as table:
            os.fsync(table.fileno())

    # ---- reading -----------------------------------------------------------------------
    def _read_one(self, key):
        row = self._index.row(key)
        if row is None:
            self._raise_missing([key])
        image = np.empty(self.image_shape, np.uint8)
        self._decode_into(image, self._files[row])
        return image, int(self._labels[row])

    def _read_many(self, ids):
        rows, found = self._index.rows(ids)
        if not found.all():
            self._raise_missing(ids[~found])
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        files = [self._files[row] for row in rows.tolist()]

        def decode(start, stop):
            for i in range(start, stop):
                self._decode_into(images[i], files[i])

        for_each_slice(decode, len(ids))
        return images, self._labels[rows]

    def _decode_into(self, out: np.ndarray, file: str) -> None:
        path = os.path.join(self.path, file)
        try:
            imagecodecs.png_decode(_read_file(path), out=out.reshape(_decoded_shape(out.shape)))
        except FileNotFoundError:
            raise CorruptStoreError(
                f"'{path}' is named in {TABLE} but missing; the store is damaged") from None
        except (imagecodecs.PngError, ValueError, TypeError, OSError) as error:
            raise CorruptStoreError(
                f"'{path}' is not a valid {out.shape} PNG ({error}); the image is damaged"
            ) from error

    def _ids(self):
        return self._index.sorted_ids

    def _count(self):
        return len(self._index)


def compression_for(image_shape, block_size: int) -> int:
    """0 when a stored (uncompressed) PNG fits in one block, else ``ZLIB_LEVEL``.

    Disk is allocated in whole blocks: a 3 KB CIFAR image takes one 4 KiB block
    compressed or not, so compressing it would cost 3x the encode and 2.5x the
    decode time and save no disk at all (only apparent size: 2.3 KB against 3.2 KB).
    """
    height, width, channels = image_shape
    pixels_with_filter_bytes = height * (width * channels + 1)
    deflate_block_headers = 5 * (pixels_with_filter_bytes // 65535 + 1)
    stored = _PNG_OVERHEAD + pixels_with_filter_bytes + deflate_block_headers
    return 0 if stored <= block_size else ZLIB_LEVEL


# Plain os calls: Python's buffered file objects cost more than writing a 3 KB file.
# O_NOFOLLOW: a symbolic link planted among the images never sends a read or a write
# outside the store.
def _write_file(path: str, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        _write_all(descriptor, content)
    finally:
        os.close(descriptor)


def _row_crc(row: bytes) -> bytes:
    """CRC-32 of a table row's text, 8 hex digits: a damaged label cannot read as valid."""
    return b"%08x" % zlib.crc32(row)


def _write_all(descriptor: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(descriptor, view):]


def _read_file(path: str) -> bytes:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        parts = []
        while part := os.read(descriptor, 1 << 16):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(descriptor)


def _decoded_shape(shape):
    # libpng hands back greyscale as (H, W).
    return shape[:2] if shape[2] == 1 else shape
