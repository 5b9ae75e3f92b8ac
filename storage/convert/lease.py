"""One conversion at a time per destination: an exclusive lock on a lease file in it.

The kernel drops the lock with the process, so a killed driver never blocks the next
run; the file names the holder for the message a second driver gets.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from storage.errors import StoreBusyError
from storage.sharded.index import LEASE


class Lease:
    def __init__(self, directory: Path):
        self.path = Path(directory) / LEASE
        self._descriptor: int | None = None

    def __enter__(self):
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(descriptor, 200).decode(errors="replace").strip()
                os.close(descriptor)
                raise StoreBusyError(
                    f"another convert ({holder or 'unknown process'}) is writing "
                    f"'{self.path.parent}'; wait for it to finish or stop it, then run again"
                ) from None
            # The holder before us may have removed the file after we opened it.
            if _same_file(descriptor, self.path):
                break
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._descriptor = descriptor
        return self

    def __exit__(self, *exc_info) -> None:
        if self._descriptor is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._descriptor)
            self._descriptor = None


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False
