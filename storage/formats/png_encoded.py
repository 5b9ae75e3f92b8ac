"""One file per encoded image, its bytes as given, with the extension of its encoding.

The layout of ``storage.formats.png`` (``labels.csv`` the commit record,
``labels.len``, overwrites as new files), in a store whose ``store.json``
records an ``"encoding"``, with two differences:

    images/00000042-1a2b3c4d.jpg     (or .png): the image with id 42, byte for byte;
    images/00000042.1-5e6f7a8b.jpg   id 42 after its first overwrite

The 8 hex digits are the CRC-32 of the file's bytes: the table row's own CRC
covers the name, so every read checks the bytes against it, and a file copied
or moved over another (its name carries its id) reads as CorruptStoreError.
The files are what a user handed in, so any image viewer opens them; plain
code reads the store with ``csv`` and ``open(path / row["file"], "rb")``,
keeping the last row per id.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import zlib

from storage.core.capabilities import Capabilities
from storage.core.files import sync_filesystem
from storage.core.threads import for_each_slice
from storage.errors import CorruptStoreError
from storage.formats.png import _FILE_NAME, IMAGES, TABLE, PngBackend, \
    _read_file, _write_file

_EXTENSIONS = {"jpeg": b"jpg", "png": b"png"}


def read_plainly(path) -> dict[int, tuple[bytes, int]]:
    """id -> (bytes, label), read with ``csv`` and ``open`` as the layout above says."""
    with open(path / TABLE, newline="") as table:
        rows = {int(row["id"]): row for row in csv.DictReader(table)}  # later rows win
    return {key: ((path / row["file"]).read_bytes(), int(row["label"]))
            for key, row in rows.items()}


class EncodedPngBackend(PngBackend):
    """``PngBackend`` with ``encoding=`` is one of these."""

    capabilities = Capabilities(encodings=("jpeg", "png"), arrays=False, max_value_bytes=2**40)
    # The crash tests kill it where its commit differs from the array layout's, and at
    # two of the 8 writes a small write session makes to labels.csv.
    facts = dataclasses.replace(PngBackend.facts, plain_reader=read_plainly,
                                crash_points=(("png-half-file", 40),),
                                syscall_kills=(2, 7))
    encoded_variant = None

    @property
    def _extension(self) -> bytes:
        return _EXTENSIONS[self.encoding]

    def _write_many(self, ids, datas, labels, overwrite) -> None:
        state = self._state
        rows, found = state.index.rows(ids)
        if found.any() and not overwrite:
            self._raise_duplicates(ids[found])
        files = [self._file_name(key, state.files[row] if was_there else None, data)
                 for key, row, was_there, data in zip(ids.tolist(), rows.tolist(),
                                                      found.tolist(), datas)]
        root = str(self.path)

        def write(start, stop):
            for i in range(start, stop):
                _write_file(os.path.join(root, files[i]), datas[i])

        for_each_slice(write, len(ids))
        if self.durable:
            sync_filesystem(self.path)  # images reach the disk before the rows naming them
        self._append_rows(ids.tolist(), labels.tolist(), files)
        self._commit_in_memory(ids, labels, files, rows, found)

    def _file_name(self, key: int, previous: str | None, data: bytes) -> str:
        generation = "" if previous is None else \
            f".{int(_FILE_NAME.match(previous.encode()).group(2) or 0) + 1}"
        return f"{IMAGES}/{key:08d}{generation}-{zlib.crc32(data):08x}.{self._extension.decode()}"

    def _read_many(self, ids):
        datas: list = [None] * len(ids)

        def read(i, file):
            datas[i] = self._read_checked(file)
            return datas[i] is not None

        return datas, self._read_rows(ids, read)

    def _read_checked(self, file: str) -> bytes | None:
        """The file's bytes once they match the CRC in its name; None when it is gone."""
        path = os.path.join(self.path, file)
        try:
            data = _read_file(path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise CorruptStoreError(f"cannot read '{path}' ({error}); the image is damaged") \
                from error
        if f"{zlib.crc32(data):08x}" != _FILE_NAME.match(file.encode()).group(3).decode():
            raise CorruptStoreError(
                f"'{path}' fails the CRC-32 in its name: its bytes are damaged, or it is "
                "another image's file moved here; the store is damaged")
        return data
