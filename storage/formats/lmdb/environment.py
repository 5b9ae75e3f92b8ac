"""One LMDB environment per store directory per process, shared and reopened after fork.

LMDB forbids opening the same environment twice in one process, so every store
object on a path shares one ``lmdb.Environment``; a forked child drops the
parent's handle (it must not be used across fork) and opens its own.

The named databases are opened once per environment and their handles shared
too (LMDB's own advice): py-lmdb's ``open_db`` begins a write transaction that
waits, holding the GIL, for a writer thread of this process that needs the GIL
to finish its own: a deadlock if a store were opened while another thread writes.
"""
from __future__ import annotations

import os
import threading

import lmdb

_lock = threading.Lock()
_environments: dict[str, list] = {}  # real path -> [environment, users, databases or None]
_owner_pid = os.getpid()

NAMES = (b"meta", b"chunks")
DATABASES = len(NAMES)


def acquire(path: str, *, map_size: int, writable: bool) -> lmdb.Environment:
    key = os.path.realpath(path)
    with _lock:
        _forget_parent_environments()
        entry = _environments.get(key)
        if entry is None:
            entry = [_open(key, map_size, writable), 0, None]
            _environments[key] = entry
        entry[1] += 1
        return entry[0]


def release(path: str) -> None:
    key = os.path.realpath(path)
    with _lock:
        entry = _environments.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _environments[key]
            entry[0].close()


def replace(path: str, failed: lmdb.Environment, *, map_size: int,
            writable: bool) -> lmdb.Environment:
    """A fresh environment for ``path`` in place of ``failed``, which LMDB gave up on.

    After a commit fails half way (a full disk), LMDB refuses every later
    transaction in that environment (MDB_PANIC); the file itself is intact.
    """
    key = os.path.realpath(path)
    with _lock:
        entry = _environments.get(key)
        if entry is None or entry[0] is not failed:
            return entry[0] if entry else failed  # another store object replaced it already
        try:
            failed.close()
        except lmdb.Error:
            pass
        entry[0], entry[2] = _open(key, map_size, writable), None
        return entry[0]


def databases(path: str, environment: lmdb.Environment, created=None):
    """(meta, chunks) handles of ``environment``, or None while a new store has none yet.

    Opened once per environment, and kept: a second ``open_db`` while a thread of this
    process is inside a write transaction would deadlock (see above). ``created``:
    the handles a writer's first commit just made.
    """
    key = os.path.realpath(path)
    with _lock:
        entry = _environments.get(key)
        current = entry is not None and entry[0] is environment
        if current and entry[2] is not None:
            return entry[2]
        handles = created
        if handles is None:
            try:
                handles = tuple(environment.open_db(name, create=False) for name in NAMES)
            except lmdb.NotFoundError:
                return None
        if current:
            entry[2] = handles
        return handles


def create_databases(environment: lmdb.Environment, txn):
    """Create the databases inside the writer's own transaction (handles valid once it commits)."""
    return tuple(environment.open_db(name, txn=txn, create=True) for name in NAMES)


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


def _forget_parent_environments() -> None:
    global _owner_pid
    if _owner_pid == os.getpid():
        return
    for environment, *_rest in _environments.values():
        try:
            environment.close()  # unmaps and closes this child's copies only
        except lmdb.Error:
            pass
    _environments.clear()
    _owner_pid = os.getpid()
