"""A writer that runs into a full disk: RLIMIT_FSIZE, or ENOSPC injected into a write.

    python -m tests.reliability.filler PATH BACKEND BATCH (--limit BYTES | --writes N)
                                       [--enospc-at N] [--encoding jpeg|png]

The store at PATH exists. It appends batches of BATCH images (write_one when
BATCH is 1) until a write fails, or for N writes with ``--writes`` (where strace
or ``--enospc-at`` injects the failure: the N-th ``os.write`` raises ENOSPC).
``--limit`` sets the soft RLIMIT_FSIZE with SIGXFSZ ignored, so that writes
past BYTES fail with EFBIG. After the first failure it reads back everything
committed through the same store object, tries one more write, closes the
store, lifts the limit, opens the store again and writes one more batch. It
prints a JSON summary of what each step raised and which ids it committed.
``--encoding``: the store holds encoded images, and the batches are bytes.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import signal
import sys

from storage import open_store
from tests.reliability.scenario import batch_for


def raise_enospc_on_nth_write(nth: int) -> None:
    original, calls = os.write, [0]

    def write(descriptor, data):
        calls[0] += 1
        if calls[0] == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(descriptor, data)

    os.write = write


def error_name(step) -> str | None:
    try:
        step()
    except Exception as error:  # the summary names it; the test judges it
        return f"{type(error).__name__}: {error}"
    return None


def main(argv) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("backend")
    parser.add_argument("batch", type=int)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--enospc-at", type=int)
    parser.add_argument("--encoding")
    args = parser.parse_args(argv)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    if args.limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.limit, hard))
    if args.enospc_at:
        raise_enospc_on_nth_write(args.enospc_at)
    summary = {"committed": [], "failed": None, "error": None, "retried": []}
    try:
        store = open_store(args.path, args.backend, mode="a")
    except Exception as error:  # a write at open (HDF5 marks the file open) may fail too
        summary["error"] = summary["open"] = f"{type(error).__name__}: {error}"
        print(json.dumps(summary))
        return 0
    next_id = int(store.ids().max()) + 1

    def write(keys):
        images, labels = batch_for(keys, encoding=args.encoding)
        if len(keys) == 1:
            store.write_one(int(keys[0]), images[0], int(labels[0]))
        else:
            store.write_many(images, labels, ids=keys)

    for _ in range(args.writes):
        keys = list(range(next_id, next_id + args.batch))
        next_id += args.batch
        summary["error"] = error_name(lambda: write(keys))
        if summary["error"]:
            summary["failed"] = keys
            break
        summary["committed"] += keys
    if summary["error"]:
        summary["read_after"] = error_name(
            lambda: store.read_many(sorted(summary["committed"]) or [0]))
        summary["write_again"] = error_name(lambda: write(list(range(next_id, next_id + 2))))
        summary["retried"] = list(range(next_id, next_id + 2))
    summary["close"] = error_name(store.close)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))

    def reopen_and_write():
        with open_store(args.path, args.backend, mode="a") as again:
            again.write_many(*batch_for(range(10**6, 10**6 + 3), encoding=args.encoding),
                             ids=range(10**6, 10**6 + 3))

    summary["reopen"] = error_name(reopen_and_write)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
