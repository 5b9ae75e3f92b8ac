"""File-system helpers shared by the backends: atomic small files, du, syncing."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import resource
import secrets
import weakref
from pathlib import Path

from storage.core.handles import in_forked_child
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


def write_json_atomically(path: Path, content: dict, *, exclusive: bool = False) -> bool:
    """Replace ``path`` with ``content``: readers see the old file or the new, never half.

    The temporary file's name is this writer's own (pid and a random part), so two
    writers never write through one. ``exclusive``: create ``path`` only if it does
    not exist (a hard link fails then), and return whether this call created it.
    """
    temp = temporary_name(path)
    try:
        with open(temp, "w") as file:
            json.dump(content, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        if exclusive:
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
        else:
            os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_directory(path.parent)
    return True


def temporary_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def leftover_temporaries(path: Path) -> list[Path]:
    """Temporary files of ``path`` that writers killed mid-write left behind.

    A temporary whose writer process still runs is someone's write in progress: not listed.
    """
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)\.[0-9a-f]+\.tmp$|"
                         + re.escape(path.name) + r"\.tmp$")
    found = []
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not (match.group(1) and _process_runs(int(match.group(1)))):
            found.append(entry)
    return found


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    # Closing the child's copy of the descriptor leaves the parent's lock held.
    for lock in list(_writer_locks):
        lock.release()


in_forked_child(_release_writer_locks_in_child)
