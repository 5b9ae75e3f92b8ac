"""A full disk: the write fails with StorageFullError, and nothing committed is lost.

The ``filler`` child writes until a write fails: past a soft RLIMIT_FSIZE (with
SIGXFSZ ignored), or where ENOSPC is injected into one write system call
(strace) or one ``os.write`` (PNG's writes go through it). It then reads back
through the same store object, tries again, closes, and opens the store anew.
The file-size limit is also reached in every format's layout of encoded images
(``encoded_modes``), by batches, at the limit its encoded layout declares.
"""
from __future__ import annotations

import json

import pytest

from tests.reliability.faults import (data_file_and_calls, encoded_modes, encoding_options,
                                      facts_of, needs_strace, required_fact, tallied)
from tests.reliability.scenario import assert_accepts_writes, assert_holds, fill, run_child
from tests.strategies import spread

FULL = "StorageFullError"


def fill_until_full(path, backend: str, batch: int, *options, prefix=(),
                    encoding: str | None = None) -> dict:
    fill(path, backend, range(50), encoding=encoding)
    result = run_child("filler", path, backend, batch, *options, *encoding_options(encoding),
                       timeout=120, prefix=prefix)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def check_after_failure(path, backend: str, summary: dict, faults: int = 1,
                        encoding: str | None = None) -> None:
    """The failure was typed, and the store holds what was committed, as it should.

    ``faults``: how many write calls may fail; after more than one, the reopened
    store's write may meet a later one (typed, like the first).
    """
    assert summary["error"].startswith(FULL), summary["error"]
    if "open" not in summary:
        assert summary["read_after"] is None, summary["read_after"]  # same store object
        for step in ("write_again", "close"):  # still full, or room again: both fine
            assert summary[step] is None or summary[step].startswith(FULL), summary[step]
        assert summary["reopen"] is None or (faults > 1 and summary["reopen"].startswith(FULL)), (
            summary["reopen"])
    committed = dict.fromkeys([*range(50), *summary["committed"]], 0)
    if summary.get("write_again") is None:
        committed.update(dict.fromkeys(summary["retried"], 0))
    if summary.get("reopen") is None and "open" not in summary:
        committed.update(dict.fromkeys(range(10**6, 10**6 + 3), 0))
    failed = summary["failed"] or []
    held = assert_holds(path, committed, {key: {0} for key in failed})
    if facts_of(backend, encoding).atomic_batches:  # the failed batch is all there or none
        assert len({key in held for key in failed}) <= 1
    assert_accepts_writes(path, backend)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("batch", [1, 64], ids=["write_one", "write_many"])
def test_file_size_limit(backend_name, new_store_path, batch):
    limit = required_fact(backend_name, "file_size_limit")  # a size a few batches reach
    path = new_store_path()
    summary = fill_until_full(path, backend_name, batch, "--limit", limit)
    with tallied("full disk: RLIMIT_FSIZE", backend_name):
        assert summary["failed"], "the limit was never reached"
        check_after_failure(path, backend_name, summary)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend, encoding", encoded_modes())
def test_file_size_limit_of_encoded_images(new_store_path, backend, encoding):
    limit = required_fact(backend, "file_size_limit", encoding)
    path = new_store_path()
    summary = fill_until_full(path, backend, 64, "--limit", limit, encoding=encoding)
    with tallied("full disk: RLIMIT_FSIZE", backend, encoding):
        assert summary["failed"], "the limit was never reached"
        check_after_failure(path, backend, summary, encoding=encoding)


@needs_strace
@pytest.mark.timeout(180)
@pytest.mark.parametrize("nth", spread([1, 2, 3, 5, 8, 13]))
def test_enospc_in_a_write_system_call(backend_name, new_store_path, nth):
    """strace fails the nth write to the data file with ENOSPC (the disk is full)."""
    data_file, calls = data_file_and_calls(backend_name)
    path = new_store_path()
    prefix = ["strace", "-f", "-qq", "-o", "/dev/null", "-P", str(path / data_file),
              "-e", f"trace={calls}", "-e", f"inject={calls}:error=ENOSPC:when={nth}"]
    summary = fill_until_full(path, backend_name, 64, "--writes", 6, prefix=prefix)
    if summary["error"] is None:
        assert len(summary["committed"]) == 6 * 64  # fewer than nth calls: nothing failed
        return
    with tallied("full disk: ENOSPC in a write system call", backend_name):
        # strace counts each call in the list on its own: the nth of each one fails.
        check_after_failure(path, backend_name, summary, faults=len(calls.split(",")))


# (batch, n): the n-th os.write fails. One image: odd n write its file, even n its
# row. 64 images: n <= 64 write files, 65 the first batch's rows, 130 the second's.
PNG_WRITES = [(1, 1), (1, 2), (1, 5), (64, 1), (64, 64), (64, 65), (64, 130)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("batch, nth", PNG_WRITES)
def test_enospc_from_os_write_in_png(new_store_path, batch, nth):
    """Without strace: PNG writes image files and its table through os.write."""
    path = new_store_path()
    summary = fill_until_full(path, "png", batch, "--writes", 3, "--enospc-at", nth)
    with tallied("full disk: ENOSPC from os.write", "png"):
        assert summary["failed"], "the injected error never came"
        check_after_failure(path, "png", summary)
