"""Cold page cache: evict a store's files, and measure how much of them is still resident.

``evict`` flushes dirty pages (``os.sync``) and asks the kernel to drop each
file's cached pages (``posix_fadvise(DONTNEED)``). The kernel may keep pages a
process has mapped or locked, so ``resident_fraction`` checks through
``mincore`` what it really did; cold benchmarks refuse to time a store that is
still more than ``MAX_RESIDENT`` in memory.
"""
from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import numpy as np

MAX_RESIDENT = 0.01

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
_MAP_FAILED = ctypes.c_void_p(-1).value


def store_files(paths) -> list[Path]:
    """Every regular file under ``paths`` (files or directories), links not followed."""
    files = []
    for path in map(Path, [paths] if isinstance(paths, (str, os.PathLike)) else paths):
        if path.is_file() and not path.is_symlink():
            files.append(path)
        elif path.is_dir():
            for root, _dirs, names in os.walk(path):
                files += [Path(root) / name for name in names
                          if (Path(root) / name).is_file() and not (Path(root) / name).is_symlink()]
    return files


def evict(paths) -> None:
    """Drop the page cache of every file under ``paths`` (written data is flushed first)."""
    if not hasattr(os, "posix_fadvise"):
        raise OSError("posix_fadvise is not available on this system")
    os.sync()
    for file in store_files(paths):
        descriptor = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def resident_bytes(paths) -> tuple[int, int]:
    """(bytes in the page cache, bytes in all) over the files under ``paths``."""
    resident = total = 0
    for file in store_files(paths):
        size = file.stat().st_size
        resident += _resident_pages(file, size) * mmap.PAGESIZE if size else 0
        total += size
    return min(resident, total), total


def resident_fraction(paths) -> float:
    resident, total = resident_bytes(paths)
    return resident / total if total else 0.0


def _resident_pages(file: Path, size: int) -> int:
    descriptor = os.open(file, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, descriptor, 0)
        if address in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap of {file} failed")
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vector = (ctypes.c_ubyte * pages)()
            if _libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore on {file} failed")
            return int(np.count_nonzero(np.frombuffer(vector, np.uint8) & 1))
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(descriptor)
