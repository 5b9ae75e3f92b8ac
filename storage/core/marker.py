"""``store.json``: which backend wrote a store directory, in which format version, its image shape.

    {"format": "image-store", "backend": "lmdb", "version": 1,
     "image_shape": [32, 32, 3], "crc": <CRC-32 of the other fields>}

One reader and one writer for every backend and for ``open_store``'s backend
lookup, so the same checks apply everywhere: the CRC catches a damaged field,
and a ``version`` newer than this library reads is refused by name.
"""
from __future__ import annotations

import fcntl
import json
import os
import zlib
from pathlib import Path

from storage.core.files import write_json_atomically
from storage.errors import CorruptStoreError, NewerFormatError, NotAStoreError, StoreNotFoundError

MARKER = "store.json"
FORMAT = "image-store"
VERSION = 1  # the marker's own layout; a backend's data layout versions itself


def marker_path(directory) -> Path:
    return Path(directory) / MARKER


def read_marker(directory) -> dict:
    """The checked marker of the store at ``directory``."""
    path = marker_path(directory)
    if not path.exists():
        raise StoreNotFoundError(f"no store at '{directory}' (no {MARKER}); check the path, "
                                 "or open with mode='w' to create one")
    try:
        marker = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotAStoreError(
            f"'{path}' is not a readable store marker ({error}); "
            "the store is damaged or this is not a store") from error
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise NotAStoreError(f"'{path}' is not a store marker")
    if "crc" in marker and marker["crc"] != marker_crc(marker):  # the oldest markers have none
        raise CorruptStoreError(f"'{path}' fails its CRC; the store is damaged")
    version = marker.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise NotAStoreError(f"'{path}' holds an invalid version {version!r}")
    if version > VERSION:
        raise NewerFormatError(
            f"the store at '{directory}' has marker version {version}, but this library "
            f"reads versions up to {VERSION}; upgrade the storage library to open it")
    if not isinstance(marker.get("backend"), str):
        raise NotAStoreError(f"'{path}' names no backend")
    return marker


def marker_shape(marker: dict, directory) -> tuple[int, ...] | None:
    shape = marker.get("image_shape")
    if shape is None:
        return None
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise NotAStoreError(f"'{marker_path(directory)}' holds an invalid image_shape {shape!r}")
    return tuple(shape)


def write_marker(directory, backend: str, image_shape, *, exclusive: bool = False,
                 **fields) -> bool:
    """Write the marker; with ``exclusive``, only if none exists (returns whether it did)."""
    marker = {"format": FORMAT, "backend": backend, "version": VERSION,
              "image_shape": list(image_shape) if image_shape else None, **fields}
    return write_json_atomically(marker_path(directory), {**marker, "crc": marker_crc(marker)},
                                 exclusive=exclusive)


def claim_shape(directory, backend: str, image_shape, **fields) -> tuple[int, ...]:
    """Record ``image_shape`` unless the marker holds one already; return the one it holds.

    Compare and set across processes and threads: the marker file is locked while
    it is read and replaced, and a writer that waited on a marker replaced meanwhile
    locks the new one, so two writers of different shapes never both win.
    """
    path = marker_path(directory)
    while True:
        with open(path, "rb") as locked:
            fcntl.flock(locked.fileno(), fcntl.LOCK_EX)
            try:
                if os.fstat(locked.fileno()).st_ino != os.stat(path).st_ino:
                    continue  # replaced while we waited: lock the current one
            except FileNotFoundError:
                continue
            marker = read_marker(directory)
            held = marker_shape(marker, directory)
            if held is not None:
                return held
            kept = {key: value for key, value in marker.items()
                    if key not in ("format", "backend", "version", "image_shape", "crc")}
            write_marker(directory, backend, image_shape, **{**kept, **fields})
            return tuple(image_shape)


def marker_crc(marker: dict) -> int:
    """CRC-32 of the marker's other fields: a damaged image_shape must not read as valid."""
    fields = {key: value for key, value in marker.items() if key != "crc"}
    return zlib.crc32(json.dumps(fields, sort_keys=True).encode())


def backend_of(directory) -> str:
    """The name of the backend that wrote the store at ``directory``."""
    return read_marker(directory)["backend"]
