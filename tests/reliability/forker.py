"""The DataLoader pattern: a store opened in this process, read in forked and spawned children.

    python -m tests.reliability.forker PATH BACKEND MODE

The store at PATH holds ids 0..49 at version 0. This opens it with MODE ("r" or
"a"), reads from it, and then hands it to children: a fork pool of workers that
use the inherited store object (what ``DataLoader(num_workers > 0)`` does),
plain ``os.fork`` children that leave through normal interpreter shutdown, and
a spawn pool that receives the store object pickled or opens it from its path.
With MODE "a" it writes before and after the children ran, and at the end it is
killed (SIGKILL) instead of closing the store, so that nothing it does at close
can repair what a child might have broken. It prints a JSON summary first: the
problems met (none expected, except StoreBusyError in every child where the
format allows one process per store) and what a forked child's write raised.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import traceback

import numpy as np

from storage import open_store
from storage.errors import StoreBusyError
from tests.reliability.scenario import batch_for, image_for, label_for

_store = None  # the store a fork worker inherits


def problems_reading(store, keys) -> list[str]:
    """What is wrong with reading ``keys`` through ``store`` (version 0 expected)."""
    try:
        images, labels = store.read_many(keys)
        expected_images, expected_labels = batch_for(keys)
        found = [] if np.array_equal(images, expected_images) and np.array_equal(
            labels, expected_labels) else [f"read_many({keys[:3]}...) is wrong"]
        for key in keys[:5]:
            image, label = store.read_one(key)
            if label != label_for(key) or not np.array_equal(image, image_for(key)):
                found.append(f"read_one({key}) is wrong")
        return found
    except StoreBusyError as error:  # the format allows one process per store (LevelDB)
        return [f"StoreBusyError: {error}"]
    except Exception:
        return [f"pid {os.getpid()}: {traceback.format_exc()}"]


def _inherit(store) -> None:
    global _store
    _store = store


def fork_worker(keys) -> list[str]:
    return problems_reading(_store, keys)


def fork_worker_writes(_) -> str:
    try:
        _store.write_one(10_000, image_for(10_000), label_for(10_000))
        return "no error"
    except Exception as error:
        return type(error).__name__


def spawn_worker_pickled(store_and_keys) -> list[str]:
    store, keys = store_and_keys
    with store:
        return problems_reading(store, keys)


def spawn_worker_reopens(path_and_keys) -> list[str]:
    path, keys = path_and_keys
    with open_store(path) as store:
        return problems_reading(store, keys)


def fork_and_wait(store, keys, touch: bool) -> tuple[int, int]:
    """A child that (if ``touch``) reads, then exits normally once told to."""
    reading_end, writing_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(writing_end)
        if touch:
            problems_reading(store, keys[:10])
        os.read(reading_end, 1)
        sys.exit(0)
    os.close(reading_end)
    return child, writing_end


def main(path: str, backend: str, mode: str) -> int:
    problems: list[str] = []
    store = open_store(path, backend, mode=mode)
    if mode == "a":
        store.write_many(*batch_for(range(50, 100)), ids=range(50, 100))
    keys = list(range(100 if mode == "a" else 50))
    problems += problems_reading(store, keys)
    batches = [keys[start::4] for start in range(4)]

    with multiprocessing.get_context("fork").Pool(2, _inherit, (store,)) as pool:
        problems += sum(pool.map(fork_worker, batches * 3), [])
        write_error = pool.map(fork_worker_writes, [0])[0]
    # Plain forks that end with normal interpreter shutdown (closing what they
    # inherited) after the parent wrote more.
    waiting = [fork_and_wait(store, keys, touch) for touch in (True, False)]
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(2) as pool:
        problems += sum(pool.map(spawn_worker_pickled, [(store, batch) for batch in batches]), [])
        problems += sum(pool.map(spawn_worker_reopens, [(path, batch) for batch in batches]), [])

    problems += problems_reading(store, keys)  # the parent's object still works
    if mode == "a":
        store.write_many(*batch_for(range(100, 1100)), ids=range(100, 1100))  # new space
    for child, go in waiting:
        os.write(go, b"!")
        os.waitpid(child, 0)
    problems += problems_reading(store, list(range(1100 if mode == "a" else 50)))
    print(json.dumps({"problems": problems[:10], "forked_write": write_error}), flush=True)
    if mode == "a":
        os.kill(os.getpid(), signal.SIGKILL)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
