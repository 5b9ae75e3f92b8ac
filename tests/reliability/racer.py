"""Children for the concurrency tests: writers and readers racing on one store.

    python -m tests.reliability.racer append PATH BACKEND BATCHES SIZE TAG
    python -m tests.reliability.racer create PATH BACKEND MODE SIDE START_FILE TRIALS
    python -m tests.reliability.racer read PATH STOP_FILE
    python -m tests.reliability.racer open-during-write PATH BACKEND

``append`` writes BATCHES batches with automatic ids; each image encodes TAG and
its batch, and every acknowledged batch is printed as JSON ``{"ids": [...], "batch": b}``.
``create``, for each trial t < TRIALS, waits for START_FILE-t, then opens a new store at
PATH-t and writes one batch of SIDE x SIDE images; it prints a line of JSON
``{"outcome": "ok"|<error class>, "ids": [...]}`` per trial.
``read`` reopens the store for every read and checks what it reads against
``scenario.image_for`` at any version; it prints JSON ``{"reads": n, "problems": [...]}``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np

from storage import StoreError, open_store
from tests.reliability.scenario import image_for, label_for


def tagged(tag: int, batch: int, size: int, side: int = 8):
    images = np.full((size, side, side, 3), tag, np.uint8)
    images[:, 0, 0, 1] = batch
    images[:, 0, 1, 1] = np.arange(size)
    return images, np.full(size, tag * 1000 + batch, np.int64)


def append(path, backend, batches, size, tag) -> None:
    with open_store(path, backend, mode="a", durable=False) as store:
        for batch in range(int(batches)):
            ids = store.write_many(*tagged(int(tag), batch, int(size), 16))
            print(json.dumps({"ids": ids.tolist(), "batch": batch}), flush=True)


def create(path, backend, mode, side, start_file, trials="1") -> None:
    for trial in range(int(trials)):
        while not os.path.exists(f"{start_file}-{trial}"):
            time.sleep(0.001)
        try:
            with open_store(f"{path}-{trial}", backend, mode=mode, durable=False) as store:
                ids = store.write_many(*tagged(int(side) % 256, 0, 4, int(side)))
            answer = {"outcome": "ok", "ids": ids.tolist()}
        except StoreError as error:
            answer = {"outcome": type(error).__name__, "message": str(error)}
        print(json.dumps(answer), flush=True)


def open_during_write(path, backend) -> None:
    """Open and close the store again and again while a thread of this process writes.

    In a child: a deadlock that holds the GIL cannot be interrupted from inside."""
    import threading
    finished = threading.Event()
    errors = []
    with open_store(path, backend, mode="a", durable=False) as writer:
        def write():
            try:
                for batch in range(8):
                    writer.write_many(*tagged(1, batch, 200, 16))
            except Exception:
                errors.append(traceback.format_exc(limit=3))
            finally:
                finished.set()

        thread = threading.Thread(target=write)
        thread.start()
        opened = 0
        while not finished.is_set():
            with open_store(path) as store:
                len(store)
            opened += 1
        thread.join()
    print(json.dumps({"opened": opened, "errors": errors}))


def read(path, stop_file) -> None:
    reads, problems = 0, []
    versions = range(8)
    while not os.path.exists(stop_file) and len(problems) < 5:
        try:
            with open_store(path) as store:
                ids = store.ids()
                key = int(ids[reads % len(ids)])
                image, label = store.read_one(key)
            if not any(label == label_for(key, v) and np.array_equal(image, image_for(key, v))
                       for v in versions):
                problems.append(f"id {key}: image and label of no one version")
        except Exception:
            problems.append(traceback.format_exc(limit=3))
        reads += 1
        if reads == 1:
            print("ready", flush=True)
    print(json.dumps({"reads": reads, "problems": problems}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"append": append, "create": create, "read": read,
     "open-during-write": open_during_write}[command](*args)
