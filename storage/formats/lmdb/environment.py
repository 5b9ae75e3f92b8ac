"""One LMDB environment per store directory per process, shared and reopened after fork.

LMDB forbids opening the same environment twice in one process, so every store
object on a path shares one ``lmdb.Environment`` (``storage.core.handles``); a
forked child drops the parent's (it must not be used across fork) and opens its own.
"""
from __future__ import annotations

import os

import lmdb

from storage.core.handles import SharedHandles

DATABASES = 2  # "meta" and "chunks"


def _close_quietly(environment: lmdb.Environment) -> None:
    try:
        environment.close()  # in a forked child: unmaps and closes this child's copies only
    except lmdb.Error:
        pass


_environments: SharedHandles[lmdb.Environment] = SharedHandles(forget=_close_quietly)


def acquire(path: str, *, map_size: int, writable: bool) -> lmdb.Environment:
    key = os.path.realpath(path)
    return _environments.acquire(key, lambda: _open(key, map_size, writable))


def release(path: str) -> None:
    _environments.release(os.path.realpath(path), close=lambda environment: environment.close())


def replace(path: str, failed: lmdb.Environment, *, map_size: int,
            writable: bool) -> lmdb.Environment:
    """A fresh environment for ``path`` in place of ``failed``, which LMDB gave up on.

    After a commit fails half way (a full disk), LMDB refuses every later
    transaction in that environment (MDB_PANIC); the file itself is intact.
    """
    key = os.path.realpath(path)

    def reopen(environment):
        _close_quietly(environment)
        return _open(key, map_size, writable)

    return _environments.replace(key, failed, reopen)


def _open(path: str, map_size: int, writable: bool) -> lmdb.Environment:
    # A read-only directory can still be read: without write access to lock.mdb,
    # open read-only without locking (safe only while nobody writes).
    can_write = os.access(path, os.W_OK)
    return lmdb.open(
        path, map_size=map_size, max_dbs=DATABASES, subdir=True,
        readonly=not can_write, lock=can_write, create=writable,
        # fsync per commit is left to the backend: at the end of a write_many and at close.
        sync=False, metasync=False,
    )
