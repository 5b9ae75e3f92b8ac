"""Tar shards in the WebDataset layout, with a sidecar index per shard as the commit record.

Layout of a store directory::

    store.json                 {"format": "image-store", "backend": "tar", "image_shape": [...]}
    shard-000000.tar           USTAR (no PAX headers), up to 10,000 samples; per sample the
                               members "{id:010d}.npy" (exactly what np.save writes) and
                               "{id:010d}.cls" (the label in ASCII), see ``layout``
    shard-000000.index.npy     int64 (rows, 5): id, offset, size, label, checksum of the
                               .npy member's data; the commit record (see ``shards``)
    shard-000001.tar ...
    commit.json                only while a commit that spans shards is under way

Plain tools read it: ``tar tf``, ``tarfile``, ``webdataset.WebDataset`` (the
``.npy`` and ``.cls`` members are the sample). Readers use only what an index
lists: opening parses no tar headers, and nothing a tar header says (names,
sizes, types) is trusted. Bytes past the last indexed sample of a shard, shards
without an index and temporary files are leftovers of an interrupted write:
ignored, and removed by the next writer.

Writing appends samples to the last shard until it holds 10,000, then starts
the next; each part is fsynced (for durable stores) before its index is renamed
into place, so a kill leaves every ``write_many`` whole or absent. Samples sit at
a fixed stride, so reading a range is one strided view per shard (each shard is
memory-mapped). Overwrites append the new sample and its index row wins over
the old one, whose bytes stay in their shard: plain tar readers see both copies
of such an id (the later one is current), and the disk is not reclaimed. Each
image carries a checksum of its id, label and pixels (tar has none for data):
damaged bytes raise CorruptStoreError, never wrong pixels. On disk each sample
costs about 2 KiB of headers and padding beyond its pixels (5,120 bytes for a
3,072-byte CIFAR image, 1.67x). Encoded images (JPEG or PNG bytes) are stored as
"{id:010d}.jpg" or ".png" members instead of ".npy": see ``encoded``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.checksums import image_checksum, image_checksums, verify_checksums
from storage.core.facts import FormatFacts, PowerLoss
from storage.core.files import WriterLock, fsync_directory, leftover_temporaries
from storage.errors import CorruptStoreError
from storage.formats.tar import shards
from storage.formats.tar.layout import END_OF_ARCHIVE, SampleLayout
from storage.formats.tar.plain import read_plainly

SHARD_SAMPLES = 10_000
_RANGE_ROWS = 256  # rows of one shard from which a range is read rather than mapped
_ID, _OFFSET, _SIZE, _LABEL, _CHECKSUM = range(5)


def _is_run(values: np.ndarray) -> bool:
    """Whether ``values`` are consecutive integers, ascending."""
    return bool(len(values)) and int(values[-1]) - int(values[0]) == len(values) - 1 and bool(
        np.all(np.diff(values) == 1))


class _Shard:
    """A committed shard: its index and, once read, its memory map."""

    def __init__(self, path: Path, number: int, index: np.ndarray):
        self.path, self.number, self.index = path, number, index
        self._view = None
        self.mapped = None  # the map of an encoded shard (storage.formats.tar.encoded)

    @property
    def file(self) -> Path:
        return self.path / shards.shard_name(self.number)

    def end(self, layout: SampleLayout) -> int:
        """Where the next sample goes: after the last indexed one."""
        if not len(self.index):
            return 0
        return int(self.index[-1, _OFFSET]) - layout.data_offset + layout.stride

    def pixels(self, layout: SampleLayout) -> np.ndarray:
        """(rows, H, W, C): a strided view of every indexed image, read-only."""
        if self._view is None:
            rows = len(self.index)
            first = int(self.index[0, _OFFSET]) + layout.pixel_offset - layout.data_offset if rows else 0
            # Map only the indexed samples: a writer may be cutting the file's tail meanwhile.
            length = first + (rows - 1) * layout.stride + layout.image_bytes if rows else 0
            whole = np.memmap(self.file, np.uint8, "r", shape=(length,)) if rows else np.zeros(
                0, np.uint8)
            self._view = np.lib.stride_tricks.as_strided(
                whole[first:], (rows, layout.image_bytes), (layout.stride, 1),
                writeable=False).reshape(rows, *layout.image_shape)
        return self._view


@dataclass(frozen=True)
class _Committed:
    """What the indexes commit, built whole and swapped in at once: a read takes it once
    and never sees one write's shards with another's id map."""
    shards: tuple[_Shard, ...]
    held_ids: np.ndarray  # sorted; below, the latest copy of each: its shard, row, label...
    owner: np.ndarray
    row: np.ndarray
    labels: np.ndarray
    checksums: np.ndarray

    @classmethod
    def of(cls, shards: list[_Shard]) -> "_Committed":
        """Which shard and row holds each id (a later shard's copy wins)."""
        parts = [shard.index for shard in shards]
        index = np.concatenate(parts) if parts else np.zeros((0, 5), np.int64)
        owners = np.concatenate([np.full(len(part), position, np.int64)
                                 for position, part in enumerate(parts)] or [np.zeros(0, np.int64)])
        rows = np.concatenate([np.arange(len(part)) for part in parts] or [np.zeros(0, np.int64)])
        # The last copy of each id: stable sort by id, keep the last of each run.
        order = np.argsort(index[:, _ID], kind="stable")
        sorted_ids = index[order, _ID]
        last = np.ones(len(order), bool)
        last[:-1] = sorted_ids[1:] != sorted_ids[:-1]
        chosen = order[last]
        return cls(tuple(shards), sorted_ids[last], owners[chosen], rows[chosen],
                   index[chosen, _LABEL], index[chosen, _CHECKSUM])

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where ``ids`` sit in ``held_ids``, and which of them are held."""
        if not len(self.held_ids):
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        positions = np.minimum(np.searchsorted(self.held_ids, ids), len(self.held_ids) - 1)
        return positions, self.held_ids[positions] == ids


class TarBackend(Backend):
    name = "tar"
    capabilities = Capabilities(encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.tar.encoded:EncodedTarBackend"
    # The default capabilities: an overwrite or a write_one appends (see above).
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,     # the index rename (or commit.json) commits a whole batch
        torn_overwrites=False,   # an overwrite appends; nothing is rewritten in place
        data_file=shards.shard_name(0), write_calls="write",
        syscall_kills=tuple(range(1, 9)),
        crash_points=(("before-rename", 1), ("before-rename", 3), ("in-fsync", 1),
                      ("tar-before-index", 2)),
        rolls_back_when_damaged=False,
        file_size_limit=300_000,
        # Durable: shard bytes and each new index are fsynced before the index is renamed
        # into place, the directory before and after.
        power_loss=PowerLoss(not_durable_loses=(
            "samples and indexes not yet written back, the store included; an index renamed "
            "into place before its bytes reached the disk fails to open, and samples whose "
            "shard bytes were lost fail their checksum (CorruptStoreError)")),
    )

    def _open(self, create: bool) -> None:
        self._writer_lock = WriterLock(self.path) if self.mode != "r" else None
        try:
            if self.mode != "r":
                self._recover()
            self._load()
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        self._committed = _Committed.of([])
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def _after_fork(self) -> None:
        self._writer_lock = None  # released in the child already; the parent keeps it
        self._load()

    # ---- the committed state -------------------------------------------------------------
    def _layout(self) -> SampleLayout | None:
        shape = self.image_shape
        if shape is None:
            return None
        if getattr(self, "_cached_layout", None) is None or self._cached_layout.image_shape != shape:
            self._cached_layout = SampleLayout(shape)  # np.save's header, computed once
        return self._cached_layout

    def _load(self) -> None:
        """Read every committed index and check it against the shards' sizes."""
        journaled = set(shards.journal_numbers(self.path))
        loaded: dict[int, _Shard] = {}
        layout = self._layout()
        for number in shards.shard_numbers(self.path) + sorted(journaled):
            if number in loaded:
                continue
            index = shards.load_index(self.path, number, number in journaled)
            if index is None:
                continue  # a leftover of an interrupted write
            shard = _Shard(self.path, number, index)
            self._check(shard, layout)
            loaded[number] = shard
        self._committed = _Committed.of([loaded[number] for number in sorted(loaded)])

    def _check(self, shard: _Shard, layout: SampleLayout | None) -> None:
        index = shard.index
        if not len(index):
            return
        where = f"the index of '{shard.file}'"
        if layout is None:
            raise CorruptStoreError(f"{where} lists images, but store.json records no image "
                                    "shape; the store is damaged")
        expected = (int(index[0, _OFFSET]) + layout.stride * np.arange(len(index)))
        if (np.any(index[:, _OFFSET] != expected) or np.any(index[:, _SIZE] != layout.npy_size)
                or int(index[0, _OFFSET]) != layout.data_offset or np.any(index[:, _ID] < 0)):
            raise CorruptStoreError(f"{where} lists offsets or sizes that are not this store's "
                                    "layout; the store is damaged")
        try:
            length = os.path.getsize(shard.file)
        except FileNotFoundError:
            raise CorruptStoreError(f"'{shard.file}' is missing but its index is not; "
                                    "the store is damaged") from None
        if length < shard.end(layout) - layout.stride + layout.pixel_offset + layout.image_bytes:
            raise CorruptStoreError(f"'{shard.file}' is shorter ({length} bytes) than its index "
                                    "says; the store is damaged")

    # ---- writing -------------------------------------------------------------------------
    def _recover(self) -> None:
        """Finish a commit recorded in commit.json; remove the leftovers of interrupted writes."""
        journaled = shards.journal_numbers(self.path)
        if journaled:
            shards.finish_commit(self.path, journaled, durable=True)
        # Only this format's own temporaries: store.json's belong to the base class (and
        # may be another creator's, being written at this moment).
        for name in os.listdir(self.path):
            if name.startswith("shard-") and name.endswith(".new"):
                os.unlink(self.path / name)
        for leftover in leftover_temporaries(self.path / shards.JOURNAL):
            leftover.unlink(missing_ok=True)
        indexed = [number for number in shards.shard_numbers(self.path)
                   if (self.path / shards.index_name(number)).exists()]
        for number in shards.shard_numbers(self.path):
            if number not in indexed:
                os.unlink(self.path / shards.shard_name(number))
        if indexed and (self.image_shape or self.encoding):  # cut an interrupted append off
            last = _Shard(self.path, indexed[-1], shards.load_index(self.path, indexed[-1], False))
            end = self._end(last)
            if os.path.getsize(last.file) != end + len(END_OF_ARCHIVE):
                self._append(last.file, end, np.zeros((0, 0), np.uint8))

    def _end(self, shard: _Shard) -> int:
        """Where the next sample of ``shard`` goes: after its last indexed one."""
        return shard.end(self._layout())

    def _samples(self, ids, labels, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The tar bytes of these samples (uint8), and each image member's data offset
        (from the first sample's start) and size."""
        layout = self._layout()
        offsets = layout.data_offset + layout.stride * np.arange(len(ids))
        return (layout.samples(ids, labels, images), offsets,
                np.full(len(ids), layout.npy_size, np.int64))

    def _checksums(self, ids, labels, images) -> np.ndarray:
        return image_checksums(ids, labels, images).view(np.int64)

    def _write_many(self, ids, images, labels, overwrite) -> None:
        checksums = self._checksums(ids, labels, images)
        committed = self._committed.shards
        last = committed[-1] if committed else None
        if last is None or len(last.index) >= SHARD_SAMPLES:
            last = _Shard(self.path, last.number + 1 if last else 0, np.zeros((0, 5), np.int64))
        new_indexes, start = {}, 0
        while start < len(ids):
            stop = min(len(ids), start + SHARD_SAMPLES - len(last.index))
            base = self._end(last)
            samples, offsets, sizes = self._samples(ids[start:stop], labels[start:stop],
                                                    images[start:stop])
            self._append(last.file, base, samples)
            rows = np.empty((stop - start, 5), np.int64)
            rows[:, _ID], rows[:, _LABEL] = ids[start:stop], labels[start:stop]
            rows[:, _OFFSET], rows[:, _SIZE] = base + offsets, sizes
            rows[:, _CHECKSUM] = checksums[start:stop]
            new_indexes[last.number] = np.concatenate([last.index, rows])
            last = _Shard(self.path, last.number + 1, np.zeros((0, 5), np.int64))
            start = stop
        if self.durable:
            fsync_directory(self.path)  # new shard files before the indexes that name them
        self._before_index()
        shards.commit(self.path, new_indexes, self.durable)
        self._load()

    def _before_index(self) -> None:
        """The samples are written, their index is not (a separate method for the crash tests)."""

    def _append(self, file: Path, offset: int, samples: np.ndarray) -> None:
        """Write ``samples`` at ``offset`` and end the archive, then cut off any leftover.

        The file never shrinks below what is written here, so readers mapping its
        indexed samples at this moment never find it shorter than they mapped.
        """
        with open(file, "r+b" if file.exists() else "wb") as out:
            out.seek(offset)
            out.write(samples.tobytes() if samples.size == 0 else memoryview(samples).cast("B"))
            out.write(END_OF_ARCHIVE)
            out.truncate()  # a leftover of an interrupted write past the new end
            out.flush()
            if self.durable:
                os.fsync(out.fileno())

    # ---- reading -------------------------------------------------------------------------
    def _read_many(self, ids):
        committed = self._committed
        positions, found = committed.positions(ids)
        if not found.all():
            raise self._missing(ids[~found])
        layout = self._layout()
        images = np.empty((len(ids), *layout.image_shape), np.uint8)
        owners, rows = committed.owner[positions], committed.row[positions]
        scratch = None
        for owner in np.unique(owners):
            shard = committed.shards[owner]
            mine = np.flatnonzero(owners == owner) if len(committed.shards) > 1 else slice(None)
            wanted = rows[mine]
            if len(wanted) >= _RANGE_ROWS and _is_run(wanted) and (
                    isinstance(mine, slice) or _is_run(mine)):
                # A long range: one read of the shard's bytes, then one strided copy. (Through
                # the memory map, faulting in each 4 KiB page costs more than the copy.)
                into = mine if isinstance(mine, slice) else slice(mine[0], mine[-1] + 1)
                scratch = self._read_range(shard, layout, int(wanted[0]), images[into], scratch)
            else:
                images[mine] = self._pixels(shard, layout)[wanted]
        labels = committed.labels[positions]
        verify_checksums(ids, labels, images, committed.checksums[positions].view(np.uint64),
                         f"the tar store at '{self.path}'")
        return images, labels

    def _read_one(self, key):
        committed = self._committed
        position = int(np.searchsorted(committed.held_ids, key))
        if position >= len(committed.held_ids) or committed.held_ids[position] != key:
            raise self._missing([key])
        shard = committed.shards[committed.owner[position]]
        image = self._pixels(shard, self._layout())[committed.row[position]].copy()
        label = int(committed.labels[position])
        if image_checksum(key, label, image) != int(committed.checksums[position]) & (2**64 - 1):
            raise CorruptStoreError(f"image {key} in the tar store at '{self.path}' fails its "
                                    "checksum; the store is damaged (rewrite it with "
                                    "overwrite=True, or restore the store from a copy)")
        return image, label

    def _read_range(self, shard: _Shard, layout: SampleLayout, first: int, out: np.ndarray,
                    scratch: np.ndarray | None) -> np.ndarray:
        """Copy rows first, first + 1, ... of ``shard`` into ``out``; return the buffer used."""
        span = len(out) * layout.stride
        if scratch is None or len(scratch) < span:
            scratch = np.empty(span, np.uint8)
        buffer = scratch[:span]
        try:
            with open(shard.file, "rb", buffering=0) as file:
                file.seek(first * layout.stride)
                got = file.readinto(memoryview(buffer))
        except OSError as error:
            raise CorruptStoreError(f"cannot read '{shard.file}' ({error}); "
                                    "the store is damaged") from None
        if got != span:
            raise CorruptStoreError(f"'{shard.file}' is shorter than its index says; "
                                    "the store is damaged")
        out[:] = np.lib.stride_tricks.as_strided(
            buffer[layout.pixel_offset:], (len(out), layout.image_bytes), (layout.stride, 1),
            writeable=False).reshape(out.shape)
        return scratch

    def _pixels(self, shard: _Shard, layout: SampleLayout) -> np.ndarray:
        try:
            return shard.pixels(layout)
        except (OSError, ValueError) as error:
            raise CorruptStoreError(f"cannot map '{shard.file}' ({error}); "
                                    "the store is damaged") from None

    def _ids(self):
        return self._committed.held_ids

    def _count(self):
        return len(self._committed.held_ids)

    def _contains_many(self, ids):
        return self._committed.positions(ids)[1]

    def _max_id(self):
        held = self._committed.held_ids
        return int(held[-1]) if len(held) else None

    # ---- adding shards made elsewhere ----------------------------------------------------
    def add_shard(self, tar_path) -> int:
        """Append the samples of a WebDataset shard made elsewhere; return how many.

        The shard is untrusted: its headers are checked one by one (regular files
        named ``{id:010d}.npy`` / ``.cls`` only, no links, devices or ``..``, sizes
        inside the file, arrays of this store's shape) and UnsafeShardError is
        raised before anything is written.
        """
        from storage.formats.tar.scan import scan_shard
        self._check_writable()
        ids, images, labels = scan_shard(Path(tar_path), self.image_shape)
        self.write_many(images, labels, ids)
        return len(ids)
