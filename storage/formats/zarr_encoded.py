"""Zarr holding encoded images: every image's bytes back to back in one flat uint8 array.

Layout of ``data.zarr/`` in a store whose ``store.json`` records an ``"encoding"``::

    data.zarr/    a Zarr v3 group; attribute "committed": rows committed (the commit record)
      bytes       uint8 (M,): the images' bytes back to back, in chunks of 1 MiB
                  (``bytes/c/<n>``, one file each), no compressor
      starts      int64 (rows,): row i's image is bytes[starts[i]:starts[i] + lengths[i]]
      lengths     int64 (rows,)
      labels      int64 (rows,)
      crcs        uint32 (rows,): CRC-32 (zlib's) of id and label (int64 LE each) followed
                  by the image's bytes (``storage.core.checksums.bytes_checksums``)
      ids         int64 (rows,): row i holds the id of the image at starts[i]

The five row arrays are in chunks of 65,536 rows, zstd level 1: zarr writes a
chunk whole, and compressed, a chunk holding a few rows takes a few bytes on
disk instead of 512 KiB. The last chunk of ``bytes`` is written whole too: up to
1 MiB beyond the images per store, not per image.

Commits, overwrites and files are the array layout's (``storage.formats.zarr``):
a write appends its bytes after the last committed row's, then its rows past
``committed``, and only then raises ``committed``; an overwrite appends too (the
newest row of an id counts; the old bytes stay, unused). Every file is written
as ``<file>.partial`` and renamed into place, so what was committed before an
error or a kill is never lost. Plain chunks, not shards: an append's bytes
rewrite at most the one partly filled 1 MiB chunk they continue, where the
sharding codec would rewrite a whole shard. Every read checks each image's CRC: damage raises
CorruptStoreError, never other bytes. Plain zarr reads it::

    group = zarr.open_group(".../data.zarr", mode="r")
    count = group.attrs["committed"]
    start, length = group["starts"][i], group["lengths"][i]   # i < count
    data = group["bytes"][start:start + length].tobytes()     # the last row of an id wins
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.checksums import bytes_checksums, raise_on_failed_checksums
from storage.core.flat_bytes import read_in_runs
from storage.errors import CorruptStoreError, StoreError
from storage.formats.latest_rows import LatestRows
from storage.formats.zarr import _ZARR_ERRORS, GROUP, INDEX_CHUNK_ROWS, ZarrBackend

BYTE_CHUNK = 1024 * 1024
# zarr's default skips (and deletes) chunks that hold only the fill value: its scan of
# every chunk made writing 19 MB of JPEGs 2-4x slower, measured.
_WRITE_EVERY_CHUNK = {"write_empty_chunks": True}
# Written before the commit record; "ids" last only to keep the order plain to follow.
_ROWS = {"starts": np.int64, "lengths": np.int64, "labels": np.int64, "crcs": np.uint32,
         "ids": np.int64}


def read_plainly(path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with zarr and zlib alone as the layout above says."""
    group = zarr.open_group(str(path / GROUP), mode="r")
    count = group.attrs["committed"]
    if not count:
        return {}
    starts, lengths, labels, crcs, ids = (group[name][:count] for name in _ROWS)
    flat = group["bytes"][:].tobytes()
    store = {}
    for key, start, length, label, crc in zip(ids.tolist(), starts.tolist(), lengths.tolist(),
                                              labels.tolist(), crcs.tolist()):
        data = flat[start:start + length]
        head = np.array([key, label], "<i8").tobytes()
        if zlib.crc32(data, zlib.crc32(head)) != crc:
            raise ValueError(f"the row of id {key} fails its CRC-32")
        store[key] = (data, label)
    return store


class EncodedZarrBackend(ZarrBackend):
    """``ZarrBackend`` with ``encoding=`` is one of these."""

    capabilities = Capabilities(overwrite=True, write_one=True, encodings=("jpeg", "png"),
                                arrays=False, max_value_bytes=2**40)  # beyond any one batch
    # One crash point and two write calls, as the other encoded layouts: the array
    # layout's facts already kill zarr's commit path at every point.
    facts = dataclasses.replace(ZarrBackend.facts, plain_reader=read_plainly,
                                data_file=f"{GROUP}/bytes/c/0.partial",
                                crash_points=(("in-fsync", 6),), syscall_kills=(2, 6))
    encoded_variant = None

    def _open(self, create: bool) -> None:
        self._starts = self._lengths = np.zeros(0, np.int64)
        self._crcs = np.zeros(0, np.uint32)
        self._end = 0  # the first byte after the committed rows' bytes
        super()._open(create)

    def _load(self, committed: int) -> None:
        self._arrays = {name: self._group[name].with_config(_WRITE_EVERY_CHUNK)
                        for name in ("bytes", *_ROWS)}
        for name in _ROWS:
            if self._arrays[name].shape[0] < committed:
                raise CorruptStoreError(f"'{name}' holds {self._arrays[name].shape[0]} rows, "
                                        f"fewer than the {committed} committed")
        rows = {name: np.asarray(self._arrays[name][:committed], dtype)
                for name, dtype in _ROWS.items()}
        ends = rows["starts"] + rows["lengths"]
        stored = self._arrays["bytes"].shape[0]
        if rows["starts"].min() < 0 or rows["lengths"].min() < 1 or ends.max() > stored:
            raise CorruptStoreError(f"the rows of {self._where()} point outside its "
                                    f"{stored} bytes; it is damaged: restore it from a copy")
        self._rows = LatestRows(rows["ids"])
        self._starts, self._lengths = rows["starts"], rows["lengths"]
        self._labels, self._crcs = rows["labels"], rows["crcs"]
        self._end = int(ends.max())

    # ---- writing -------------------------------------------------------------------------
    def _write_many(self, ids, datas, labels, overwrite) -> None:
        # Held ids were refused by the base class (Backend._refuse_held) before this call.
        crcs = bytes_checksums(ids, labels, datas).astype(np.uint32)
        lengths = np.fromiter((len(data) for data in datas), np.int64, len(datas))
        starts = self._end + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        end = self._end + int(lengths.sum())
        first = self._rows.rows_held
        stop = first + len(ids)
        columns = (("bytes", np.frombuffer(b"".join(datas), np.uint8), self._end, end),
                   ("starts", starts, first, stop), ("lengths", lengths, first, stop),
                   ("labels", labels, first, stop), ("crcs", crcs, first, stop),
                   ("ids", ids, first, stop))
        try:
            self._write_columns(columns, stop)
        except (OSError, StoreError):  # the base class says what failed (a full disk, say)
            raise
        except _ZARR_ERRORS as error:  # a chunk read back to be extended is damaged
            raise self._damaged(error) from error
        # Committed: only now does this object believe it.
        self._rows = self._rows.appended(ids)
        self._starts = np.concatenate([self._starts, starts])
        self._lengths = np.concatenate([self._lengths, lengths])
        self._labels = np.concatenate([self._labels, labels])
        self._crcs = np.concatenate([self._crcs, crcs])
        self._end = end

    def _write_columns(self, columns, committed: int) -> None:
        if not self._arrays:
            self._create_arrays()
        for name, values, start, stop in columns:
            array = self._arrays[name]
            if array.shape[0] < stop:  # it may be longer after a cut write
                array.resize((stop,))
            array[start:stop] = values
        self._group.attrs["committed"] = committed  # the files above are on disk (durable)

    def _create_arrays(self, image_shape=None) -> None:
        """The arrays, empty (any left by a cut first write are replaced)."""
        self._arrays = {"bytes": self._group.create_array(
            "bytes", shape=(0,), dtype="uint8", chunks=(BYTE_CHUNK,), compressors=None,
            fill_value=0, overwrite=True, config=_WRITE_EVERY_CHUNK)}
        for name, dtype in _ROWS.items():
            self._arrays[name] = self._group.create_array(
                name, shape=(0,), dtype=dtype, chunks=(INDEX_CHUNK_ROWS,),
                compressors=[ZstdCodec(level=1)], fill_value=0, overwrite=True,
                config=_WRITE_EVERY_CHUNK)

    # ---- reading -------------------------------------------------------------------------
    _read_one = Backend._read_one  # the default (through _read_many), not the array layout's

    def _read_many(self, ids):
        rows, found = self._rows.rows(ids)
        if not found.all():
            raise self._missing(ids[~found])
        # Runs of images closer than a chunk: zarr reads whole chunks anyway.
        datas = read_in_runs(self._read_bytes, self._starts[rows], self._lengths[rows],
                             BYTE_CHUNK)
        labels = self._labels[rows]
        bad = bytes_checksums(ids, labels, datas) != self._crcs[rows]
        raise_on_failed_checksums(ids, bad, self._where())
        return datas, labels

    def _read_bytes(self, start: int, stop: int) -> np.ndarray:
        flat = self._zarr_read(lambda: self._arrays["bytes"][start:stop])
        if flat.shape != (stop - start,) or flat.dtype != np.uint8:
            raise self._damaged(ValueError(f"read {flat.shape} {flat.dtype} bytes"))
        return flat

    def _where(self) -> str:
        return f"the zarr store of encoded images at '{self.path}'"
