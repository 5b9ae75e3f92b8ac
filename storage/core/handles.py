"""Handles that belong to one process: opened lazily, dropped in a forked child.

A file, an LMDB environment or a thread pool inherited across ``fork()`` is the
parent's: using it from the child, or closing it through the parent's state
(an HDF5 flush, an LMDB commit), corrupts the parent's store or deadlocks. Every
backend keeps such handles through this module: a forked child starts with none
of them, after dropping its copies in the way each kind needs, and opens its own
on first use. Pickling a store sends its path and options, never a handle
(``Backend``).

The ways to drop a copy:

- ``ProcessLocal``: one value per process (the thread pool);
- ``SharedHandles``: one handle per path per process, shared by the store objects on
  it; a child ``forget``s its copies (LMDB closes only the child's mapping);
- ``track``: an object whose ``_handle`` a child takes away and never closes. SQLite
  documents that a connection carried across fork() and used or closed in the child
  can corrupt the database (closing the last connection checkpoints and deletes the
  WAL file the parent still writes), and LevelDB's close waits for a compaction
  thread that does not exist in the child. Such a handle is leaked on purpose
  (``abandon``), which costs a few kilobytes in that child only;
- ``in_forked_child``: anything else a child must do first (HDF5 closes the files it
  inherited through /dev/null).
"""
from __future__ import annotations

import ctypes
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


def in_forked_child(drop: Callable[[], None]) -> None:
    """Call ``drop()`` in every child this process forks, before the child runs on."""
    os.register_at_fork(after_in_child=drop)


class ProcessLocal(Generic[T]):
    """One value per process, made by ``make()`` on first use; a forked child makes its own."""

    def __init__(self, make: Callable[[], T]):
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()
        _process_locals.add(self)

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value

    def _drop_in_child(self) -> None:
        # The parent's value (a pool whose threads did not follow) is left unclosed.
        self._value, self._lock = None, threading.Lock()


class SharedHandles(Generic[T]):
    """One handle per key (a store's real path) per process, shared by its users.

    ``forget(handle)`` lets go of a child's inherited copy without touching the
    parent's state (an LMDB environment closes only this process's mapping).
    """

    def __init__(self, forget: Callable[[T], None]):
        self._forget = forget
        self._entries: dict[Hashable, list] = {}  # key -> [handle, users]
        self._lock = threading.Lock()
        _shared_handles.add(self)

    def acquire(self, key: Hashable, open_handle: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [open_handle(), 0]
            entry[1] += 1
            return entry[0]

    def get(self, key: Hashable) -> T | None:
        """The handle open for ``key`` in this process, if any (no user is counted)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry[0] if entry else None

    def release(self, key: Hashable, close: Callable[[T], None]) -> None:
        """One user fewer; the last one closes the handle."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._entries[key]
                close(entry[0])

    def replace(self, key: Hashable, failed: T, reopen: Callable[[T], T]) -> T:
        """``reopen(failed)`` in place of ``failed``, unless another user replaced it already."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not failed:
                return entry[0] if entry else failed
            entry[0] = reopen(failed)
            return entry[0]

    def _drop_in_child(self) -> None:
        entries, self._entries, self._lock = self._entries, {}, threading.Lock()
        for handle, _users in entries.values():
            self._forget(handle)


def track(owner) -> None:
    """Have a forked child take ``owner._handle`` away (never closed) as it starts."""
    _owners.add(owner)


def abandon(handle) -> None:
    """Keep ``handle`` alive for the rest of this process, so that nothing ever closes it."""
    if handle is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))


_process_locals: weakref.WeakSet[ProcessLocal] = weakref.WeakSet()
_shared_handles: weakref.WeakSet[SharedHandles] = weakref.WeakSet()
_owners: weakref.WeakSet = weakref.WeakSet()  # objects whose ``_handle`` a child must drop


def _drop_all_in_child() -> None:
    for local in list(_process_locals):
        local._drop_in_child()
    for table in list(_shared_handles):
        table._drop_in_child()
    for owner in list(_owners):
        abandon(getattr(owner, "_handle", None))
        owner._handle = None


in_forked_child(_drop_all_in_child)
