"""A reader beside a live writer: reads everything visible, again and again, and checks it.

    python -m tests.reliability.reader PATH STOP_FILE

Each pass opens the store afresh, reads every id it lists and compares the
pixels and labels with what was written (``scenario.image_for``); it also rereads
through one store object kept open from the start. The number of ids seen may
never go down. It prints ``ready`` after its first pass; after STOP_FILE appears
it makes one last pass, then prints a JSON summary: passes, the counts seen first
and last, and every problem met.
"""
from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

from storage import open_store
from tests.reliability.scenario import image_for, label_for

_expected: dict[int, tuple[np.ndarray, int]] = {}


def check(store, problems: list[str]) -> int:
    ids = store.ids()
    images, labels = store.read_many(ids)
    for key, image, label in zip(ids.tolist(), images, labels.tolist()):
        if key not in _expected:
            _expected[key] = image_for(key), label_for(key)
        want_image, want_label = _expected[key]
        if label != want_label or not np.array_equal(image, want_image):
            problems.append(f"id {key} reads back wrong")
    return len(ids)


def main(path: str, stop_file: str) -> int:
    problems: list[str] = []
    counts: list[int] = []
    kept = open_store(path)
    try:
        while True:
            stopping = os.path.exists(stop_file)
            with open_store(path) as store:
                count = check(store, problems)
            if counts and count < counts[-1]:
                problems.append(f"the count went down from {counts[-1]} to {count}")
            counts.append(count)
            check(kept, problems)
            if len(counts) == 1:
                print("ready", flush=True)
            if stopping or problems:
                break
    except Exception:  # report it: the test asserts there is nothing to report
        problems.append(traceback.format_exc())
    print(json.dumps({"passes": len(counts), "counts": counts[:1] + counts[-1:],
                      "problems": problems[:10]}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
