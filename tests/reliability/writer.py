"""A writer to be killed: stores images and acknowledges each commit on stdout.

    python -m tests.reliability.writer PATH BACKEND SEED OPS [--overwrite FIRST STOP]
                                       [--crash POINT:N] [--pause SECONDS]
                                       [--encoding jpeg|png]

Before each operation it prints ``begin <op> <version> <ids...>``, after the
commit ``ack <op>``. Operations are write_one and write_many of 1-120 images,
drawn from SEED; new ids follow the largest one in the store. With
``--overwrite``, operations instead overwrite random ids in [FIRST, STOP) with
version <op> + 1. ``--crash`` kills the process with SIGKILL at a point inside
the write path, the N-th time it is reached (see CRASH_POINTS). ``--pause``
sleeps between operations, so that readers in other processes see many states.
``--encoding`` writes encoded images (bytes) and creates the store with it if missing.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

from storage import open_store
from tests.reliability.scenario import batch_for


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def on_nth_call(owner, name: str, nth: int, before=None, after=None) -> None:
    """Wrap ``owner.name`` so its nth call runs ``before(*args)`` or ``after()`` around it."""
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth and before:
            before(*args, **kwargs)
        result = original(*args, **kwargs)
        if calls[0] == nth and after:
            after()
        return result

    setattr(owner, name, wrapper)


def half_of_the_rows(store, ids, labels, files) -> None:
    rows = store._table_rows(ids, labels, files)
    descriptor = os.open(store._table, os.O_WRONLY | os.O_APPEND)
    os.write(descriptor, rows[:len(rows) // 2])
    die()


def half_a_file(path, content) -> None:
    with open(path, "wb") as file:
        file.write(content[:len(content) // 2])
    die()


CRASH_POINTS = ("png-before-rows", "png-half-rows", "png-half-file", "lmdb-in-transaction",
                "hdf5-before-flush", "hdf5-after-flush", "before-rename", "while-creating",
                "in-fsync", "after-commit", "sqlite-before-commit", "leveldb-before-batch",
                "tar-before-index")


def install_crash(point: str, nth: int) -> None:
    import h5py

    from storage.formats import png as png_backend
    from storage.formats.lmdb import backend as lmdb_backend
    hooks = {
        "png-before-rows": lambda: on_nth_call(png_backend.PngBackend, "_append_rows", nth,
                                               before=lambda *a: die()),
        "png-half-rows": lambda: on_nth_call(png_backend.PngBackend, "_append_rows", nth,
                                             before=half_of_the_rows),
        "png-half-file": lambda: _half_a_png_file(nth),
        "lmdb-in-transaction": lambda: _wrap_work(lmdb_backend.LmdbBackend, nth),
        "hdf5-before-flush": lambda: on_nth_call(h5py.File, "flush", nth, before=lambda *a: die()),
        "hdf5-after-flush": lambda: on_nth_call(h5py.File, "flush", nth, after=die),
        "before-rename": lambda: _die_before_renaming_new_file(nth),
        "while-creating": lambda: _die_on_create(),
        "in-fsync": lambda: on_nth_call(os, "fsync", nth, before=lambda *a: die()),
        "after-commit": lambda: None,  # handled by the loop below
        # The batch is in the transaction, the memtable's batch or the shard, not committed.
        "sqlite-before-commit": lambda: _die_before_sqlite_commit(nth),
        "leveldb-before-batch": lambda: on_nth_call(_backend_class("leveldb"), "_commit", nth,
                                                    before=lambda *a: die()),
        "tar-before-index": lambda: on_nth_call(_backend_class("tar"), "_before_index", nth,
                                                before=lambda *a: die()),
    }
    assert set(hooks) == set(CRASH_POINTS)
    hooks[point]()


def _half_a_png_file(nth: int) -> None:
    """Kill half way through the nth image file, of arrays or of encoded images."""
    from storage.formats import png as png_backend
    from storage.formats import png_encoded
    for module in (png_backend, png_encoded):  # each calls the _write_file it imported
        on_nth_call(module, "_write_file", nth, before=half_a_file)


def _backend_class(name: str):
    from storage.registry import backend_class
    return backend_class(name)


def _die_before_sqlite_commit(nth: int) -> None:
    """Kill as the nth COMMIT statement is about to run: the rows are in, uncommitted."""
    import contextlib
    cls = _backend_class("sqlite")
    original = cls._transaction
    calls = [0]

    @contextlib.contextmanager
    def transaction(self, db):
        with original(self, db):
            yield
            calls[0] += 1
            if calls[0] == nth:
                die()

    cls._transaction = transaction


def _die_before_renaming_new_file(nth: int) -> None:
    """Kill just before the nth rename of a finished ``*.new`` file into place."""
    original = os.replace
    calls = [0]

    def replace(source, *args, **kwargs):
        if str(source).endswith(".new"):
            calls[0] += 1
            if calls[0] == nth:
                die()
        return original(source, *args, **kwargs)

    os.replace = replace


def _wrap_work(cls, nth: int) -> None:
    original = cls._write_txn
    calls = [0]

    def write_txn(self, work, *args):
        calls[0] += 1
        if calls[0] == nth:
            return original(self, lambda txn: (work(txn), die()), *args)
        return original(self, work, *args)

    cls._write_txn = write_txn


def _die_on_create() -> None:
    from storage.core.backend import Backend
    original = Backend._prepare_directory

    def prepare(self):
        created = original(self)
        if created:
            die()  # the marker is written, the backend's files are not
        return created

    Backend._prepare_directory = prepare


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("backend")
    parser.add_argument("seed", type=int)
    parser.add_argument("ops", type=int)
    parser.add_argument("--overwrite", nargs=2, type=int)
    parser.add_argument("--crash")
    parser.add_argument("--pause", type=float, default=0)
    parser.add_argument("--encoding")
    args = parser.parse_args(argv)
    crash_point, crash_at = None, 0
    if args.crash:
        crash_point, crash_at = args.crash.rsplit(":", 1)
        crash_at = int(crash_at)
        install_crash(crash_point, crash_at)
    rng = np.random.default_rng(args.seed)
    store = open_store(args.path, args.backend, mode="a", encoding=args.encoding)
    ids = store.ids()
    next_id = int(ids[-1]) + 1 if len(ids) else 0
    print("open", flush=True)
    for op in range(args.ops):
        one = rng.random() < 0.5
        count = 1 if one else int(rng.integers(1, 121))
        if args.overwrite:
            first, stop = args.overwrite
            keys = np.sort(rng.choice(np.arange(first, stop), min(count, stop - first),
                                      replace=False))
            version = op + 1
        else:
            keys, version = np.arange(next_id, next_id + count), 0
            next_id += count
        print("begin", op, version, *keys.tolist(), flush=True)
        images, labels = batch_for(keys, version, args.encoding)
        if one:
            store.write_one(int(keys[0]), images[0], int(labels[0]), overwrite=True)
        else:
            store.write_many(images, labels, ids=keys, overwrite=True)
        if crash_point == "after-commit" and op + 1 == crash_at:
            die()
        print("ack", op, flush=True)
        time.sleep(args.pause)
    store.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
