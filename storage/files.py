"""File-system helpers shared by the backends: atomic small files, du, syncing."""
from __future__ import annotations

import ctypes
import errno
import json
import os
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
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "w") as file:
        json.dump(content, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    fsync_directory(path.parent)


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


def translate_os_error(error: OSError, path: Path) -> Exception:
    """Our typed error for a failed write, or the original when it is something else."""
    if error.errno in _FULL_ERRNOS:
        return StorageFullError(
            f"no space left to write the store at '{path}' ({os.strerror(error.errno)}); "
            "what was committed before is intact: free space and write again"
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ReadOnlyError(
            f"cannot write the store at '{path}': {os.strerror(error.errno)}; "
            "check the directory's permissions or open it with mode='r'"
        )
    return error
