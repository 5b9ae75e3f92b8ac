"""File-system helpers shared by the backends: atomic small files, du, syncing."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import resource
import weakref
from pathlib import Path

from storage.errors import ReadOnlyError, StorageFullError

_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (what ``du`` counts, not apparent sizes)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # removed while we walked
                pass
    return total


def write_json_atomically(path: Path, content: dict) -> None:
    """Replace ``path`` with ``content``: readers see the old file or the new, never half."""
    write_file_atomically(path, json.dumps(content, indent=1).encode())


def write_file_atomically(path: Path, content: bytes, temp_suffix: str = ".tmp") -> None:
    """Replace ``path`` with ``content``, through a power loss too: the bytes reach the
    disk before the rename that publishes them (else the name may survive, empty),
    and the directory is synced after it."""
    temp = path.with_name(path.name + temp_suffix)
    with open(temp, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    fsync_directory(path.parent)


def make_directories_durably(path: Path) -> None:
    """``mkdir -p path``, syncing the parent of each directory made: a new directory's
    name is on the disk only once its parent is synced."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_directory(directory.parent)


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the file system holding ``path``: one call, not one per file."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        if _syncfs(descriptor) != 0:
            os.sync()
    finally:
        os.close(descriptor)


def _syncfs(descriptor: int) -> int:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs(descriptor)
    except (OSError, AttributeError):
        return -1


def translate_os_error(error: Exception, path: Path) -> Exception:
    """Our typed error for a failed write, or the original when it is something else."""
    code = error_number(error)
    if code in _FULL_ERRNOS:
        return StorageFullError(
            f"no space left to write the store at '{path}' ({os.strerror(code)}); "
            "what was committed before is intact: free space and write again"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ReadOnlyError(
            f"cannot write the store at '{path}': {os.strerror(code)}; "
            "check the directory's permissions or open it with mode='r'"
        )
    return error


def storage_looks_full(file: Path, size: int) -> bool:
    """Whether writing ``size`` more bytes to ``file`` would meet a full disk or RLIMIT_FSIZE."""
    stats = os.statvfs(file.parent)
    if stats.f_bavail * stats.f_frsize < size:
        return True
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    try:
        length = os.path.getsize(file)
    except OSError:
        length = 0
    return limit != resource.RLIM_INFINITY and length + size >= limit


def error_number(error: Exception) -> int | None:
    """The errno behind ``error``; h5py and LMDB give it only in the message."""
    if getattr(error, "errno", None) is not None:
        return error.errno
    found = re.search(r"errno = (\d+)", str(error))
    if found:
        return int(found.group(1))
    names = {os.strerror(code): code for code in (*_FULL_ERRNOS, errno.EACCES, errno.EROFS)}
    return next((code for name, code in names.items() if name in str(error)), None)


class WriterLock:
    """An exclusive lock on a store directory: one writer per store.

    Another process or store object asking for it gets ReadOnlyError. The kernel drops
    it with the process, so a killed writer never leaves a stale one behind, and a
    forked child lets go of its copy at once (the parent keeps the lock).
    """

    def __init__(self, path: Path):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise ReadOnlyError(
                f"another process or store object is writing the store at '{path}'; close "
                "it first, or open this one with mode='r'") from None
        self._descriptor: int | None = descriptor
        _writer_locks.add(self)

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


_writer_locks: weakref.WeakSet[WriterLock] = weakref.WeakSet()


def _release_writer_locks_in_child() -> None:
    for lock in list(_writer_locks):
        lock.release()


os.register_at_fork(after_in_child=_release_writer_locks_in_child)
