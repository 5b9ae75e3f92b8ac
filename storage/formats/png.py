"""One PNG file per image, labels in one table beside them.

Layout of a store directory::

    store.json        {"format": "image-store", "backend": "png", "image_shape": [H, W, C], ...}
    labels.csv        header "id,label,file,crc", then one row per committed image;
                      crc: CRC-32 of the row's "id,label,file" text, 8 hex digits.
                      Only the last row of an id is valid: earlier ones name files
                      that an overwrite replaced and deleted.
    labels.len        "<bytes> <crc>": the table's length at its last commit (layout 2);
                      a table shorter than that lost committed rows: CorruptStoreError
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
Plain code reads it with ``csv`` and Pillow: ``Image.open(store / row["file"])``,
keeping the last row per id. Each PNG (layout 2, ``"layout": 2`` in store.json)
carries its own file name in a private chunk (``stNm``, after IHDR) that PNG's
CRC covers and every read checks: a file copied or moved over another is
CorruptStoreError, not another image. Pillow skips the chunk.
PNG's own CRCs and zlib's checksum catch damaged image bytes, the row CRC a
damaged id, label or file name.
"""
from __future__ import annotations

import csv
import functools
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import imagecodecs
import numpy as np

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts, PowerLoss
from storage.core.options import Options, is_int, option
from storage.errors import CorruptStoreError
from storage.core.files import WriterLock, fsync_directory, sync_filesystem
from storage.core.threads import for_each_slice
from storage.core.validation import MAX_ID
from storage.core.row_index import RowIndex

TABLE = "labels.csv"
LENGTH = "labels.len"  # the table's length at its last commit: a shorter table lost rows
NAME_CHUNK = b"stNm"  # private, ancillary, safe to copy: PNG readers skip it
_AFTER_IHDR = 8 + 25  # signature, then IHDR (length, type, 13 bytes, CRC)
_READ_ATTEMPTS = 4
_READ_SIZE = 1 << 16
# Layout 2 adds labels.len and each file's name chunk; stores of layout 1 read as before.
LAYOUT = 2
HEADER = b"id,label,file,crc\n"
_UNCHECKED_HEADER = b"id,label,file\n"  # tables written before rows carried a CRC
IMAGES = "images"
# When compressing: level 1 files are within 1 % of level 9's size at a fraction of the time.
ZLIB_LEVEL = 1
# Signature, IHDR, IDAT and IEND chunks, zlib header and checksum around stored pixels.
_PNG_OVERHEAD = 63
# images/<id>[.<generation>][-<CRC-32 of the bytes>].<png or jpg>: the CRC part only in
# stores of encoded images (storage.formats.png_encoded).
_FILE_NAME = re.compile(rb"^images/(\d+)(?:\.(\d+))?(?:-([0-9a-f]{8}))?\.(png|jpg)$")


@functools.cache
def _row_pattern(checked: bool, extension: bytes, encoded: bool) -> re.Pattern:
    """A whole table row that ``_parse_row`` accepts: (text, id, label, file, file's id, crc)."""
    digest = rb"-[0-9a-f]{8}" if encoded else rb""
    crc = rb",([0-9a-f]{8})" if checked else rb"()"
    return re.compile(rb"^((\d{1,19}),(-?\d{1,19}),(images/(\d{1,20})(?:\.\d+)?" + digest
                      + rb"\." + re.escape(extension) + rb"))" + crc + rb"\n", re.MULTILINE)


def read_plainly(path) -> dict[int, tuple[np.ndarray, int]]:
    """id -> (image, label), read with ``csv`` and Pillow as the layout above says."""
    from PIL import Image  # only this reader uses Pillow; the backend uses libpng directly

    with open(path / TABLE, newline="") as table:
        rows = {int(row["id"]): row for row in csv.DictReader(table)}  # later rows win
    store = {}
    for key, row in rows.items():
        with Image.open(path / row["file"]) as image:
            pixels = np.asarray(image)
        store[key] = (pixels[..., None] if pixels.ndim == 2 else pixels, int(row["label"]))
    return store


@dataclass(frozen=True)
class PngOptions(Options):
    # zlib level; None: 0 (stored) when an uncompressed PNG of the store's images still
    # fits in one file-system block, else ZLIB_LEVEL (see compression_for).
    compression: int | None = option(None, "a zlib level 0..9, or None to choose by image size",
                                     lambda value: value is None or is_int(value)
                                     and 0 <= value <= 9)


class PngBackend(Backend):
    """``compression``: see ``PngOptions``."""

    name = "png"
    Options = PngOptions
    # Grey, grey+alpha, RGB, RGBA; encoded images as they are, in storage.formats.png_encoded.
    capabilities = Capabilities(channels=(1, 2, 3, 4), encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.png_encoded:EncodedPngBackend"
    _extension = b"png"  # of the image files
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=False,  # a batch's rows go in one write, of which a kill may leave a prefix
        torn_overwrites=False,  # an overwrite writes a new file; the old one stays until its row
        data_file=TABLE, write_calls="write",
        syscall_kills=tuple(range(1, 10)),  # one write of the table per operation
        crash_points=(("png-before-rows", 2), ("png-half-rows", 3), ("png-half-file", 40),
                      ("before-rename", 1), ("in-fsync", 1)),
        rolls_back_when_damaged=False,
        file_size_limit=6_000,  # the table outgrows it within a few batches
        power_loss=PowerLoss(not_durable_loses=(
            "rows and image files not yet written back; a torn labels.csv row fails its "
            "CRC (CorruptStoreError) until the store is rewritten")),
    )

    def __init__(self, path, mode="r", *, durable=True, **options):
        self._layout = LAYOUT  # a new store's; an existing store's comes from its marker
        self._compression = None  # the level in use, chosen from the options when first needed
        super().__init__(path, mode, durable=durable, **options)

    def _zlib_level(self) -> int:
        if self._compression is None:
            self._compression = self.options.compression
        if self._compression is None:
            self._compression = compression_for(self.image_shape, os.statvfs(self.path).f_bsize)
        return self._compression

    def _marker_fields(self) -> dict:
        return {"layout": self._layout} if self._layout > 1 else {}

    def _open(self, create: bool) -> None:
        self._compression = self.options.compression
        self._table = self.path / TABLE
        self._directory = os.fspath(self.path) + os.sep  # joined to a file name per read
        self._length_file = self.path / LENGTH
        self._image_dir = self.path / IMAGES
        self._layout = self._load_marker().get("layout", 1)
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
            if self._layout > 1:
                # Before the table: never more than it holds; synced, or a power loss
                # may keep its name (synced with the table's below) and lose its bytes.
                self._record_length(len(HEADER), sync=True)
            new_table = self._table.with_name(TABLE + ".new")
            with open(new_table, "wb") as table:
                table.write(HEADER)
                table.flush()
                os.fsync(table.fileno())  # else a power loss may keep the name, empty
            os.replace(new_table, self._table)  # a table is whole, header and all
            fsync_directory(self.path)
        if unfinished and self.mode == "r":
            self._state = _Table(RowIndex(np.zeros(0, np.int64)), np.zeros(0, np.int64), [])
        else:
            self._state = self._load_table()
        if self.mode != "r":
            self._remove_uncommitted_files()

    def _close(self) -> None:
        if self._writer_lock is not None:
            self._writer_lock.release()

    # ---- the label table ---------------------------------------------------------------
    def _load_table(self) -> "_Table":
        # The length first: the table only grows, and its length is recorded after rows land.
        recorded = self._recorded_length() if self._layout > 1 else 0
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
        if committed < recorded:
            raise CorruptStoreError(
                f"'{self._table}' holds {committed} bytes of whole rows, but its last commit "
                f"recorded {recorded} in {LENGTH}: rows are missing, the store is damaged "
                "(restore it from a copy)")
        if committed < len(content) and self.mode != "r":
            os.truncate(self._table, committed)
        body = content[len(header):committed]
        keys, labels, files = self._parse_rows_at_once(body) or self._parse_rows(body)
        # Later rows of an id replace earlier ones: keep each id's last row.
        latest = dict(zip(keys.tolist(), range(len(keys))))
        rows = np.fromiter(latest.values(), np.int64, len(latest))
        ids = np.fromiter(latest.keys(), np.int64, len(latest))
        files = list(map(bytes.decode, map(files.__getitem__, rows.tolist())))
        return _Table(RowIndex(ids), labels[rows], files)

    def _parse_rows_at_once(self, body: bytes):
        """Keys, labels and files of a table that is all well-formed rows, else None.

        One regular expression over the whole table, the checks on arrays: an open of
        10,000 images spends a fraction of what a parse row by row costs. Anything it
        does not accept goes to ``_parse_rows``, which names the bad line.
        """
        found = _row_pattern(self._checked_rows, self._extension,
                             self.encoding is not None).findall(body)
        if len(found) != body.count(b"\n"):
            return None
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), []
        texts, keys, labels, files, digits, crcs = zip(*found)
        if self._checked_rows:
            computed = np.fromiter(map(zlib.crc32, texts), np.uint32, len(texts))
            if not np.array_equal(computed, np.frombuffer(bytes.fromhex(b"".join(crcs).decode()),
                                                          ">u4")):
                return None
        try:
            keys, labels, digits = (np.array(list(map(int, column)), np.int64)
                                    for column in (keys, labels, digits))
        except OverflowError:
            return None
        return (keys, labels, files) if np.array_equal(digits, keys) else None

    def _parse_rows(self, body: bytes):
        """Keys, labels and files, row by row: names the first line that is wrong."""
        keys, labels, files = [], [], []
        for number, line in enumerate(body.splitlines(), start=2):
            key, label, file = self._parse_row(line, number)
            keys.append(key), labels.append(label), files.append(file)
        return np.array(keys, np.int64), np.array(labels, np.int64), files

    # ---- the commit record: how long the table was at its last commit ----------------------
    def _recorded_length(self) -> int:
        try:
            content = self._length_file.read_bytes()
        except FileNotFoundError:
            raise CorruptStoreError(
                f"the PNG store at '{self.path}' has no {LENGTH}; it is damaged") from None
        digits, _, crc = content.rstrip(b"\n").partition(b" ")
        if not digits.isdigit() or _row_crc(digits) != crc:
            raise CorruptStoreError(f"'{self._length_file}' fails its CRC; the store is damaged")
        return int(digits)

    def _record_length(self, length: int, sync: bool = False) -> None:
        """Overwrite the record in place: one small write, all or nothing for a kill."""
        digits = b"%020d" % length
        descriptor = os.open(self._length_file, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(descriptor, digits + b" " + _row_crc(digits) + b"\n", 0)
            if sync:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)

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
        else:
            if not (0 <= key <= MAX_ID and -2**63 <= label < 2**63):
                match = None
        if match is not None:  # one call for the three groups: this runs for every row
            digits, version, extension = match.group(1, 3, 4)
        if (match is None or int(digits) != key or extension != self._extension
                or (version is None) != (self.encoding is None)):
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
            if self._layout > 1:
                if self.durable:
                    os.fsync(descriptor)  # the rows reach the disk before the record of them
                self._record_length(end + len(rows))
        finally:
            os.close(descriptor)

    def _remove_uncommitted_files(self) -> None:
        named = set(self._state.files)
        for entry in os.scandir(self._image_dir):
            if f"{IMAGES}/{entry.name}" not in named:
                os.unlink(entry.path)

    # ---- writing -----------------------------------------------------------------------
    def _write_many(self, ids, images, labels, overwrite) -> None:
        state = self._state
        rows, found = state.index.rows(ids)
        if found.any() and not overwrite:
            self._raise_duplicates(ids[found])
        files = [self._new_file_name(key, state.files[row] if was_there else None)
                 for key, row, was_there in zip(ids.tolist(), rows.tolist(), found.tolist())]

        root, level, bound = str(self.path), self._zlib_level(), self._layout > 1

        def encode_and_write(start, stop):
            for i in range(start, stop):
                encoded = imagecodecs.png_encode(images[i], level=level)
                _write_file(os.path.join(root, files[i]),
                            _with_name(encoded, files[i]) if bound else encoded)

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
        """Swap in a new table state: readers of this object hold the old one or the new,
        each pairing every file with its own label (a state is never changed in place)."""
        state = self._state
        index, all_labels, all_files = state.index, state.labels, state.files
        superseded = []
        if found.any():
            all_labels, all_files = all_labels.copy(), list(all_files)
            for i in np.flatnonzero(found):
                superseded.append(all_files[rows[i]])
                all_files[rows[i]] = files[i]
                all_labels[rows[i]] = labels[i]
        new = ~found
        if new.any():
            index = index.appended(ids[new])
            all_labels = np.concatenate([all_labels, labels[new]])
            all_files = [*all_files, *(file for file, is_new in zip(files, new) if is_new)]
        self._state = _Table(index, all_labels, all_files)
        for file in superseded:  # committed elsewhere now; a reader that still had it retries
            os.unlink(self.path / file)

    def _sync(self) -> None:
        with open(self._table, "ab") as table:
            os.fsync(table.fileno())
        if self._layout > 1:
            with open(self._length_file, "rb+") as length:
                os.fsync(length.fileno())

    # ---- reading -----------------------------------------------------------------------
    def _read_one(self, key):
        # The common case straight: one lookup, one decode. A missing id, a file that a
        # writer replaced since this state was taken, or encoded bytes take the batch path.
        state = self._state
        row = state.index.row(key) if self.encoding is None else None
        if row is not None:
            image = np.empty(self.image_shape, np.uint8)
            if self._decode_into(image, state.files[row]):
                return image, int(state.labels[row])
        images, labels = self._read_many(np.array([key], np.int64))
        return images[0], int(labels[0])

    def _read_many(self, ids):
        rows, found = self._state.index.rows(ids)
        if not found.all():  # before the shape is needed: a new store has none yet
            raise self._missing(ids[~found])
        images = np.empty((len(ids), *self.image_shape), np.uint8)
        labels = self._read_rows(ids, lambda i, file: self._decode_into(images[i], file))
        return images, labels

    def _read_rows(self, ids, read: Callable[[int, str], bool]) -> np.ndarray:
        """Labels of ``ids``, calling ``read(i, file)`` on threads for each position's file;
        ``read`` returns False for a file that is gone, which is then looked up again."""
        labels = np.empty(len(ids), np.int64)
        pending = np.arange(len(ids))
        for attempt in range(_READ_ATTEMPTS):
            state = self._state  # one state for the whole read: files and labels agree
            rows, found = state.index.rows(ids[pending])
            if not found.all():
                raise self._missing(ids[pending][~found])
            files = [state.files[row] for row in rows.tolist()]
            positions = pending.tolist()  # Python ints: this loop holds the GIL
            gone = [False] * len(positions)

            def read_slice(start, stop):
                for i in range(start, stop):
                    gone[i] = not read(positions[i], files[i])

            for_each_slice(read_slice, len(positions))
            labels[pending] = state.labels[rows]
            if not any(gone):
                return labels
            gone = np.array(gone)
            # A writer replaced those images since this state was taken (their old files
            # are deleted once the new rows are committed): read them again as they are now.
            missing = [files[i] for i in np.flatnonzero(gone)]
            pending = pending[gone]
            if self._state is state and not self._reload_state():
                break
        path = os.path.join(self.path, missing[0])
        raise CorruptStoreError(f"'{path}' is named in {TABLE} but missing; the store is damaged")

    def _reload_state(self) -> bool:
        """Read the table again (a reader's view, after a writer in another process
        committed); False where nothing new can come: this object is the writer."""
        if self.mode != "r":
            return False
        self._state = self._load_table()
        return True

    def _decode_into(self, out: np.ndarray, file: str) -> bool:
        """Decode ``file`` into ``out``; False when it is gone."""
        path = self._directory + file
        try:
            content = _read_file(path)
            if self._layout > 1:
                _check_name(content, file, path)  # decoders skip the chunk itself
            imagecodecs.png_decode(content, out=out.reshape(_decoded_shape(out.shape)))
        except FileNotFoundError:
            return False
        except (imagecodecs.PngError, ValueError, TypeError, OSError) as error:
            raise CorruptStoreError(
                f"'{path}' is not a valid {out.shape} PNG ({error}); the image is damaged"
            ) from error
        return True

    def _ids(self):
        return self._state.index.sorted_ids

    def _contains_many(self, ids):
        return self._state.index.rows(ids)[1]

    def _max_id(self):
        return self._state.index.max_id

    def _count(self):
        return len(self._state.index)


@dataclass(frozen=True)
class _Table:
    """The committed table as this object knows it; replaced whole, never changed in place."""
    index: RowIndex
    labels: np.ndarray
    files: list[str]


def _with_name(png: bytes, file: str) -> bytes:
    """``png`` with a chunk naming its own file right after IHDR: PNG's CRC over it binds
    the pixels to one id and version, so a file copied over another is not read as it."""
    name = file.encode()
    chunk = (struct.pack(">I", len(name)) + NAME_CHUNK + name
             + struct.pack(">I", zlib.crc32(NAME_CHUNK + name)))
    return png[:_AFTER_IHDR] + chunk + png[_AFTER_IHDR:]


def _check_name(content: bytes, file: str, path: str) -> None:
    """That the PNG's name chunk names ``file``, its CRC included (checked on every read).

    Compared field by field, the CRC continued from the type's: building the whole
    expected chunk per read cost 5 % of a CIFAR read."""
    name = file.encode()
    start = _AFTER_IHDR + 8
    end = start + len(name)
    if (content[start:end] != name
            or content[_AFTER_IHDR:start] != _name_head(len(name))
            or content[end:end + 4] != zlib.crc32(name, _NAME_CHUNK_CRC).to_bytes(4, "big")):
        raise CorruptStoreError(
            f"'{path}' does not carry its own name ({file}): it is another image's file, "
            "copied or moved here; the store is damaged")


_NAME_CHUNK_CRC = zlib.crc32(NAME_CHUNK)  # a chunk's CRC covers its type, then its data


@functools.lru_cache(maxsize=64)
def _name_head(length: int) -> bytes:
    """The length and type fields of a name chunk holding ``length`` bytes."""
    return struct.pack(">I", length) + NAME_CHUNK


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
        first = os.read(descriptor, _READ_SIZE)
        if len(first) < _READ_SIZE:  # the whole file (most are): no second call to see EOF
            return first
        parts = [first]
        while part := os.read(descriptor, _READ_SIZE):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(descriptor)


def _decoded_shape(shape):
    # libpng hands back greyscale as (H, W).
    return shape[:2] if shape[2] == 1 else shape
