"""One LMDB environment per store directory per process, shared and reopened after fork.

LMDB forbids opening the same environment twice in one process, so every store
object on a path shares one ``lmdb.Environment``, kept in a table of
``storage.core.handles``: a forked child closes its copy of the parent's
environment (which unmaps only the child's mapping) and opens its own on first use.

A durable writer's environment syncs each commit's data pages before LMDB writes
the meta page that commits them (LMDB's ``MDB_NOMETASYNC``): without that
ordering a power cut can leave a meta page that points at pages never written,
and the store unreadable. The meta page itself is synced by the backend, at the
end of each ``write_many`` and at close. The first store object to open a path
in a process decides this for every store object on that path in the process.

The named databases are opened once per environment and their handles shared
too (LMDB's own advice): py-lmdb's ``open_db`` begins a write transaction that
waits, holding the GIL, for a writer thread of this process that needs the GIL
to finish its own: a deadlock if a store were opened while another thread writes.
"""
from __future__ import annotations

import os
import threading

import lmdb

from storage.core.handles import SharedHandles, in_forked_child

NAMES = (b"meta", b"chunks")
DATABASES = len(NAMES)


class _Opened:
    """An environment of this process, and its database handles once known."""

    __slots__ = ("environment", "databases")

    def __init__(self, environment: lmdb.Environment):
        self.environment = environment
        self.databases = None


def _close(opened: _Opened) -> None:
    try:
        opened.environment.close()  # in a forked child: unmaps this child's copy only
    except lmdb.Error:
        pass


_environments: SharedHandles[_Opened] = SharedHandles(forget=_close)  # real path -> _Opened
_databases_lock = threading.Lock()


def _new_databases_lock() -> None:
    global _databases_lock
    _databases_lock = threading.Lock()  # a parent's thread may have held it at fork


in_forked_child(_new_databases_lock)


def acquire(key: str, *, map_size: int, writable: bool,
            readahead: bool = True, durable: bool = False) -> lmdb.Environment:
    """The process's environment for the store whose real path (``os.path.realpath``,
    one key however the path is spelled) is ``key``; the options apply when this call
    opens it."""
    opened = _environments.acquire(
        key, lambda: _Opened(_open(key, map_size, writable, readahead, durable)))
    return opened.environment


def release(key: str) -> None:
    _environments.release(key, _close)


def replace(key: str, failed: lmdb.Environment, *, map_size: int,
            writable: bool, readahead: bool = True,
            durable: bool = False) -> lmdb.Environment:
    """A fresh environment for ``key`` in place of ``failed``, which LMDB gave up on.

    After a commit fails half way (a full disk), LMDB refuses every later
    transaction in that environment (MDB_PANIC); the file itself is intact.
    """
    current = _environments.get(key)
    if current is None or current.environment is not failed:
        return current.environment if current else failed  # replaced by another store object

    def reopen(old: _Opened) -> _Opened:
        _close(old)
        return _Opened(_open(key, map_size, writable, readahead, durable))

    return _environments.replace(key, current, reopen).environment


def databases(key: str, environment: lmdb.Environment, created=None):
    """(meta, chunks) handles of ``environment``, or None while a new store has none yet.

    Opened once per environment, and kept: a second ``open_db`` while a thread of this
    process is inside a write transaction would deadlock (see above). ``created``:
    the handles a writer's first commit just made.
    """
    opened = _environments.get(key)
    current = opened is not None and opened.environment is environment
    with _databases_lock:
        if current and opened.databases is not None:
            return opened.databases
        handles = created
        if handles is None:
            try:
                handles = tuple(environment.open_db(name, create=False) for name in NAMES)
            except lmdb.NotFoundError:
                return None
        if current:
            opened.databases = handles
        return handles


def create_databases(environment: lmdb.Environment, txn):
    """Create the databases inside the writer's own transaction (handles valid once it commits)."""
    return tuple(environment.open_db(name, txn=txn, create=True) for name in NAMES)


def _open(path: str, map_size: int, writable: bool, readahead: bool,
          durable: bool) -> lmdb.Environment:
    # A read-only directory can still be read: without write access to lock.mdb,
    # open read-only without locking (safe only while nobody writes).
    can_write = os.access(path, os.W_OK)
    return lmdb.open(
        path, map_size=map_size, max_dbs=DATABASES, subdir=True,
        readonly=not can_write, lock=can_write, create=writable, readahead=readahead,
        # Durable: data pages synced before the meta page is written (see above); the
        # meta page is synced by the backend at the end of a write_many and at close.
        sync=durable and writable, metasync=False,
    )
