"""One writer appends while several reader processes read everything they can see.

The readers are fresh interpreters (spawned, not forked). Each checks every image
it reads against what was written, and that the number of ids never goes down;
a reader that crashes, hangs or reads a torn image fails the test.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.reliability.faults import WriterSession, tallied
from tests.reliability.scenario import REPO, child_command, child_env, fill

READERS = 3


@pytest.mark.timeout(120)
def test_readers_beside_a_live_writer(backend_name, new_store_path, tmp_path):
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
