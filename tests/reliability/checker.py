"""Reads damaged stores for the corruption tests, in a process of its own.

    python -m tests.reliability.checker

Each line on stdin is JSON ``{"path": ..., "versions": {id: version},
"earlier": {id: [version, ...]}}``: a store that held those ids at those versions
(``scenario.image_for``), after holding some of them at the earlier versions,
before someone damaged it. The checker opens it and reads every id it lists, one
by one and all at once, and answers one JSON line: ``{"outcome": ...}``, one of

    "typed"    a StoreError was raised
    "ok"       everything read back right; ``unlisted`` ids were lost
    "stale"    as "ok", but some ids read back at an earlier version
    "wrong"    pixels or a label came back that were never written
    "untyped"  some other exception escaped

A crash or a hang shows as a dead or silent checker, which the test reports.
"""
from __future__ import annotations

import json
import sys
import traceback

import numpy as np

from storage import StoreError, open_store
from tests.reliability.scenario import image_for, label_for


def version_read(key: int, image, label, versions: dict[int, list[int]]) -> int | None:
    """Which of ``versions[key]`` was read (the first is the current one), if any."""
    for version in versions.get(key, []):
        if label == label_for(key, version) and np.array_equal(image, image_for(key, version)):
            return version
    return None


def check(path: str, current: dict[int, int], earlier: dict[int, list[int]]) -> dict:
    versions = {key: [version, *earlier.get(key, [])] for key, version in current.items()}
    stale, typed = False, None
    with open_store(path) as store:
        ids = store.ids().tolist()
        if len(store) != len(ids):
            return {"outcome": "wrong", "detail": f"len() is {len(store)} for {len(ids)} ids"}
        for key in ids:
            try:
                image, label = store.read_one(key)
            except StoreError as error:
                typed = typed or type(error).__name__
                continue
            read = version_read(key, image, label, versions)
            if read is None:
                return {"outcome": "wrong", "detail": f"read_one({key})"}
            stale |= read != current[key]
        try:
            images, labels = store.read_many(ids)
        except StoreError as error:
            typed = typed or type(error).__name__
        else:
            for key, image, label in zip(ids, images, labels.tolist()):
                read = version_read(key, image, label, versions)
                if read is None:
                    return {"outcome": "wrong", "detail": f"read_many, id {key}"}
                stale |= read != current[key]
    if typed:
        return {"outcome": "typed", "error": typed}
    return {"outcome": "stale" if stale else "ok", "unlisted": len(set(current) - set(ids))}


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        current = {int(key): version for key, version in request["versions"].items()}
        earlier = {int(key): versions for key, versions in request.get("earlier", {}).items()}
        try:
            answer = check(request["path"], current, earlier)
        except StoreError as error:
            answer = {"outcome": "typed", "error": type(error).__name__}
        except Exception:
            answer = {"outcome": "untyped", "error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
