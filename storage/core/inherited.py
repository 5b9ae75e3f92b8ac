"""Library handles inherited through fork(): the child never uses them and never closes them.

SQLite documents that a connection carried across fork() and used or closed in
the child can corrupt the database (closing the last connection checkpoints
and deletes the WAL file the parent still writes), and LevelDB's close waits
for a compaction thread that does not exist in the child. A child therefore
drops the handle without closing it: the object is leaked on purpose, which
costs a few kilobytes in that child only.
"""
from __future__ import annotations

import ctypes
import os
import weakref

_owners: weakref.WeakSet = weakref.WeakSet()  # objects whose ``_handle`` a child must drop


def track(owner) -> None:
    """Have a forked child take ``owner._handle`` away (never closed) as it starts."""
    _owners.add(owner)


def abandon(handle) -> None:
    """Keep ``handle`` alive for the rest of this process, so that nothing ever closes it."""
    if handle is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))


def _drop_in_child() -> None:
    for owner in list(_owners):
        abandon(getattr(owner, "_handle", None))
        owner._handle = None


os.register_at_fork(after_in_child=_drop_in_child)
