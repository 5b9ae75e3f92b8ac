"""Tar shards of encoded images: each sample is "{id:010d}.jpg" (or ".png") and its ".cls".

The store directory is laid out as for arrays (``backend``); only the samples differ::

    header of "{id:010d}.jpg"   512 bytes, USTAR (".png" in a PNG store)
    its data                    the JPEG or PNG file's bytes, byte for byte, zero-padded to
                                a multiple of 512
    header of "{id:010d}.cls"   512 bytes
    its data                    the label in ASCII decimal, zero-padded to 512 bytes

so samples differ in length and follow each other without gaps. The index's
rows (id, offset, size, label, checksum) locate each image member's data;
checksum is the CRC-32 of id and label (int64 LE each) followed by the bytes
(``storage.core.checksums.bytes_checksums``). This is exactly what WebDataset
reads: ``webdataset.WebDataset(shards)`` yields ``{"__key__", "jpg", "cls"}``
per sample. Commits, recovery and overwrites are the array layout's. On disk a
sample costs its bytes, 1,536 bytes of headers and label, and under 512 bytes
of padding.
"""
from __future__ import annotations

import dataclasses
import mmap
import os
from pathlib import Path

import numpy as np

from storage.core.capabilities import Capabilities
from storage.core.checksums import bytes_checksums, raise_on_failed_checksums
from storage.errors import CorruptStoreError, UnsupportedOperationError
from storage.formats.tar.backend import _ID, _OFFSET, _SIZE, TarBackend, _Shard
from storage.formats.tar.layout import (BLOCK, LABEL_BYTES, MAX_MEMBER_BYTES, label_members,
                                        member_headers, padded, stems_of)

EXTENSIONS = {"jpeg": "jpg", "png": "png"}


def read_plainly(path: Path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with ``webdataset.WebDataset`` alone; a later copy wins."""
    import webdataset  # a development requirement: only this reader needs it
    urls = [str(shard) for shard in sorted(Path(path).glob("shard-*.tar"))]
    store = {}
    for sample in webdataset.WebDataset(urls, shardshuffle=False, empty_check=False):
        data = sample.get("jpg", sample.get("png"))
        store[int(sample["__key__"])] = (data, int(sample["cls"].decode("ascii")))
    return store


class EncodedTarBackend(TarBackend):
    """``TarBackend`` with ``encoding=`` is one of these."""

    capabilities = Capabilities(encodings=("jpeg", "png"), arrays=False,
                                max_value_bytes=MAX_MEMBER_BYTES)
    # The crash tests kill it where its commit differs from the array layout's, and at
    # two of the ~12 writes a small write session makes to the first shard.
    facts = dataclasses.replace(TarBackend.facts, plain_reader=read_plainly,
                                crash_points=(("tar-before-index", 2),),
                                syscall_kills=(2, 9))
    encoded_variant = None

    # ---- layout --------------------------------------------------------------------------
    def _end(self, shard: _Shard) -> int:
        if not len(shard.index):
            return 0
        last = shard.index[-1]
        return int(last[_OFFSET]) + padded(int(last[_SIZE])) + LABEL_BYTES

    def _samples(self, ids, labels, datas):
        sizes = np.fromiter(map(len, datas), np.int64, len(datas))
        stems = stems_of(ids)
        headers = member_headers(stems, f".{EXTENSIONS[self.encoding]}".encode(), sizes)
        labels_ = label_members(stems, labels)
        lengths = BLOCK + padded(sizes) + LABEL_BYTES
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) + BLOCK
        parts = []
        for header, data, size, label in zip(headers, datas, sizes.tolist(), labels_):
            parts += [header.data, data, bytes(padded(size) - size), label.data]
        return np.frombuffer(b"".join(parts), np.uint8), offsets, sizes

    def _checksums(self, ids, labels, datas) -> np.ndarray:
        return bytes_checksums(ids, labels, datas).view(np.int64)

    def _check(self, shard: _Shard, layout) -> None:
        index = shard.index
        if not len(index):
            return
        offsets, sizes = index[:, _OFFSET], index[:, _SIZE]
        ends = offsets + padded(sizes) + LABEL_BYTES
        if (np.any(sizes < 1) or np.any(index[:, _ID] < 0) or int(offsets[0]) != BLOCK
                or np.any(offsets[1:] != ends[:-1] + BLOCK)):
            raise CorruptStoreError(f"the index of '{shard.file}' lists offsets or sizes that "
                                    "are not this store's layout; the store is damaged")
        try:
            length = os.path.getsize(shard.file)
        except FileNotFoundError:
            raise CorruptStoreError(f"'{shard.file}' is missing but its index is not; "
                                    "the store is damaged") from None
        if length < int(ends[-1]):
            raise CorruptStoreError(f"'{shard.file}' is shorter ({length} bytes) than its index "
                                    "says; the store is damaged")

    # ---- reading -------------------------------------------------------------------------
    def _read_one(self, key):
        datas, labels = self._read_many(np.array([key], np.int64))
        return datas[0], int(labels[0])

    def _read_many(self, ids):
        committed = self._committed
        positions, found = committed.positions(ids)
        if not found.all():
            raise self._missing(ids[~found])
        owners, rows = committed.owner[positions], committed.row[positions]
        datas = [b""] * len(ids)
        for owner in np.unique(owners).tolist():
            shard = committed.shards[owner]
            mine = np.flatnonzero(owners == owner)
            index = shard.index[rows[mine]]
            values = self._read_values(shard, index[:, _OFFSET], index[:, _SIZE])
            for position, data in zip(mine.tolist(), values):
                datas[position] = data
        labels = committed.labels[positions]
        bad = bytes_checksums(ids, labels, datas) != committed.checksums[positions].view(np.uint64)
        raise_on_failed_checksums(ids, bad, f"the tar store at '{self.path}'")
        return datas, labels

    def _read_values(self, shard: _Shard, offsets: np.ndarray, sizes: np.ndarray) -> list[bytes]:
        """The bytes at ``offsets`` of ``sizes`` in ``shard``, sliced out of its memory map:
        one copy per value and no system call (one ``pread`` each took 5x as long)."""
        mapped = self._mapped(shard)
        return [mapped[start:start + size]
                for start, size in zip(offsets.tolist(), sizes.tolist())]

    def _mapped(self, shard: _Shard) -> mmap.mmap:
        """The shard's indexed samples, memory-mapped once per committed shard. Only
        those: a writer may be cutting a leftover off the file's tail meanwhile."""
        if shard.mapped is None:
            try:
                with open(shard.file, "rb") as file:
                    shard.mapped = mmap.mmap(file.fileno(), self._end(shard),
                                             access=mmap.ACCESS_READ)
            except (OSError, ValueError) as error:
                raise CorruptStoreError(f"cannot map '{shard.file}' ({error}); "
                                        "the store is damaged") from None
        return shard.mapped

    def add_shard(self, tar_path) -> int:
        raise UnsupportedOperationError(
            "add_shard takes shards of .npy arrays, and this tar store holds encoded images; "
            "write the images' bytes with write_many instead")
