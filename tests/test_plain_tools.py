"""Command-line tools read what the record formats wrote, without this library."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests.reliability.scenario import batch_for, fill

pytestmark = pytest.mark.timeout(60)


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 shell is not installed")
def test_the_sqlite3_shell_reads_a_sqlite_store(new_store_path):
    path = new_store_path()
    fill(path, "sqlite", range(12))
    database = str(path / "images.sqlite")

    def query(sql: str) -> str:
        return subprocess.run(["sqlite3", "-readonly", database, sql], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert query("PRAGMA page_size") == "65536"
    assert query("PRAGMA journal_mode") == "wal"
    assert query("SELECT value FROM metadata WHERE key = 'shape'") == "16,16,3"
    assert query("SELECT count(*) FROM images") == "12"
    image, label = batch_for([7])
    assert query("SELECT label FROM images WHERE id = 7") == str(label[0])
    pixels = bytes.fromhex(query("SELECT hex(data) FROM images WHERE id = 7"))
    np.testing.assert_array_equal(np.frombuffer(pixels, np.uint8).reshape(16, 16, 3), image[0])
