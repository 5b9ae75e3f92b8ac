"""One writer appends while several reader processes read everything they can see.

The readers are fresh interpreters (spawned, not forked). Each checks every image
it reads against what was written, and that the number of ids never goes down;
a reader that crashes, hangs or reads a torn image fails the test. A format
that allows one process per store (``capabilities.processes == "one"``) must
instead refuse the second process with StoreBusyError, by name.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from storage.registry import backend_class
from tests.reliability.faults import WriterSession, tallied
from tests.reliability.scenario import REPO, assert_holds, child_command, child_env, fill

READERS = 3


@pytest.mark.timeout(120)
def test_readers_beside_a_live_writer(backend_name, new_store_path, tmp_path):
    if backend_class(backend_name).capabilities.processes == "one":
        return second_process_is_refused(backend_name, new_store_path(), tmp_path / "stop")
    path, stop = new_store_path(), tmp_path / "stop"
    fill(path, backend_name, range(50))
    readers = [subprocess.Popen(child_command("reader", path, stop), cwd=REPO, env=child_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(READERS)]
    try:
        for reader in readers:  # each has read the store once before the writer starts
            assert reader.stdout.readline() == "ready\n", reader.communicate(timeout=30)[1]
        writer = WriterSession(path, backend_name, 31, 40, "--pause", "0.02")
        assert writer.finish() == 0, writer.stderr
    finally:
        stop.touch()
    written = len(writer.committed(dict.fromkeys(range(50), 0)))
    with tallied(f"{READERS} readers beside a live writer", backend_name):
        firsts = []
        for reader in readers:
            out, err = reader.communicate(timeout=60)
            assert reader.returncode == 0, f"a reader failed:\n{out}\n{err}"
            summary = json.loads(out)
            assert summary["problems"] == [] and summary["passes"] >= 3, summary
            assert summary["counts"][-1] == written
            firsts.append(summary["counts"][0])
        assert min(firsts) < written  # they did read while the writer wrote


def second_process_is_refused(backend_name: str, path, stop) -> None:
    """Where a format allows one process per store (LevelDB), the second gets StoreBusyError.

    A reader holds the store; a writer in another process fails with a message
    that says why, and succeeds once the reader has gone.
    """
    fill(path, backend_name, range(50))
    reader = subprocess.Popen(child_command("reader", path, stop), cwd=REPO, env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "ready\n", reader.communicate(timeout=30)[1]
        refused = WriterSession(path, backend_name, 31, 5)
        with tallied("a second process beside the first", backend_name):
            assert refused.finish() == 1 and not refused.acked, refused.stderr
            assert "StoreBusyError" in refused.stderr and "one process" in refused.stderr
    finally:
        stop.touch()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0 and json.loads(out)["problems"] == [], err
    writer = WriterSession(path, backend_name, 31, 5)
    assert writer.finish() == 0, writer.stderr
    assert_holds(path, writer.committed(dict.fromkeys(range(50), 0)))
