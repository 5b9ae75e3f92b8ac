"""The writer child: runs a plan of calls on a store on the journaling mount.

``python -m tests.powerloss.writer MOUNT BACKEND DURABLE SEED PLAN_JSON [ENCODING]``

After each call returns it adds the mark ``returned <n>`` to the journal (and
``opened`` / ``closed``), so that the journal says which calls a cut came after.
The kernel does not forward ``syncfs`` to FUSE, so every ``syncfs`` looked up
through ``ctypes.CDLL`` and every ``os.sync`` first tells the file system through
its control attribute; on a frozen mount that fails with EIO, and so does the call.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import storage
from tests.powerloss.sequence import Call, batch_for

STORE = "store"


def report_syncs_to(mount: str) -> None:
    def tell() -> None:
        os.setxattr(mount, "user.powerloss.syncfs", b"")

    look_up = ctypes.CDLL.__getitem__

    def look_up_reporting_syncfs(library, name):
        function = look_up(library, name)
        if name != "syncfs":
            return function

        def syncfs(*args):
            tell()
            return function(*args)
        return syncfs

    ctypes.CDLL.__getitem__ = look_up_reporting_syncfs
    real_sync = os.sync

    def sync() -> None:
        tell()
        real_sync()

    os.sync = sync


def mark(mount: str, text: str) -> None:
    os.setxattr(mount, "user.powerloss.mark", text.encode())


def run(mount: str, backend: str, durable: bool, seed: int, plan: list[Call],
        encoding: str | None = None) -> None:
    report_syncs_to(mount)
    store = storage.open_store(Path(mount) / STORE, backend, mode="w", durable=durable,
                               encoding=encoding)
    mark(mount, "opened")
    for number, call in enumerate(plan):
        images, labels = batch_for(seed, call.ids, encoding)
        if call.kind == "many":
            store.write_many(images, labels, ids=list(call.ids))
        else:
            store.write_one(call.ids[0], images[0], int(labels[0]))
        mark(mount, f"returned {number}")
    store.close()
    mark(mount, "closed")


def main(argv: list[str]) -> int:
    mount, backend, durable, seed, plan_file, *encoding = argv
    plan = [Call.from_json(call) for call in json.loads(Path(plan_file).read_text())]
    try:
        run(mount, backend, durable == "1", int(seed), plan, *encoding)
    except Exception as error:  # the power went off under the writer: EIO, typed or not
        print(f"writer stopped: {type(error).__name__}: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
