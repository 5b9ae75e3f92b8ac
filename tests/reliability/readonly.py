"""Opens a store that this process may read but not write, and reports what happened.

    python -m tests.reliability.readonly PATH BACKEND COUNT [--as-nobody]

The store holds ids 0..COUNT-1 at version 0. With ``--as-nobody`` (the test runs
as root, whom permission bits do not stop) this process first imports what it
needs and then drops to the user ``nobody``, for whom the store's root-owned
directory is read-only. It prints a JSON summary: what reading and each way of
writing raised ("no error" when nothing did).
"""
from __future__ import annotations

import json
import os
import pwd
import sys

import numpy as np

from storage import open_store
from tests.reliability.scenario import batch_for, image_for


def outcome(step) -> str:
    try:
        step()
    except Exception as error:  # the test judges the type
        return f"{type(error).__name__}: {error}"
    return "no error"


def main(path: str, backend: str, count: str, *options: str) -> int:
    count = int(count)

    def read():
        with open_store(path) as store:
            images, labels = store.read_many(range(count))
            expected_images, expected_labels = batch_for(range(count))
            assert np.array_equal(images, expected_images)
            assert np.array_equal(labels, expected_labels)

    def write_many():
        with open_store(path, backend, mode="a") as store:
            store.write_many(*batch_for(range(count, count + 3)), ids=range(count, count + 3))

    def write_one():
        with open_store(path, backend, mode="a") as store:
            store.write_one(count, image_for(count), 1)

    def create_beside():
        open_store(os.path.join(path, "inner"), backend, mode="w").close()

    if "--as-nobody" in options:
        read()  # as root: every module a read needs is imported before the privileges go
        nobody = pwd.getpwnam("nobody")
        os.setgid(nobody.pw_gid)
        os.setgroups([])
        os.setuid(nobody.pw_uid)

    print(json.dumps({"uid": os.getuid(), "read": outcome(read), "write_many": outcome(write_many),
                      "write_one": outcome(write_one), "create": outcome(create_beside)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
