"""The layouts' docstrings, followed by plain code: what a reader without this library does.

LMDB: ``max_dbs=2``, and K (images per value) read from ``meta``, not assumed
to be 64. PNG: ``labels.csv`` keeps superseded rows, so a plain reader keeps
the last row per id (earlier rows name deleted files).
"""
from __future__ import annotations

import csv
import struct

import lmdb
import numpy as np
import pytest
from PIL import Image

from tests.reliability.scenario import fill, image_for, label_for

pytestmark = pytest.mark.timeout(60)


def test_lmdb_plain_reader_takes_k_from_meta(new_store_path):
    path = new_store_path()
    shape = (64, 64, 3)
    images = np.random.default_rng(1).integers(0, 256, (40, *shape), dtype=np.uint8)
    from storage import open_store
    with open_store(path, "lmdb", mode="w") as store:
        store.write_many(images, np.arange(40))
    env = lmdb.open(str(path), max_dbs=2, readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            meta, chunks = env.open_db(b"meta", txn=txn), env.open_db(b"chunks", txn=txn)
            (k,) = struct.unpack("<I", txn.get(b"chunk_images", db=meta))
            assert k == 16  # not 64: K is per store
            key = 37
            value = txn.get((key // k).to_bytes(8, "big"), db=chunks)
            count = struct.unpack_from("<I", value, 4)[0]
            slots = np.frombuffer(value, "<u4", count, 16 + 16 * count)
            position = int(np.searchsorted(slots, key % k))
            pixels = np.frombuffer(value, np.uint8, count * 64 * 64 * 3, 16 + 20 * count)
            assert np.array_equal(pixels.reshape(count, *shape)[position], images[key])
    finally:
        env.close()


def test_png_plain_reader_keeps_the_last_row_per_id(new_store_path):
    path = new_store_path()
    fill(path, "png", range(10))
    fill(path, "png", [3, 4], version=1)
    latest = {}
    with open(path / "labels.csv", newline="") as table:
        for row in csv.DictReader(table):
            latest[int(row["id"])] = row
    for key, row in latest.items():
        version = int(key in (3, 4))
        assert np.array_equal(np.asarray(Image.open(path / row["file"])), image_for(key, version))
        assert int(row["label"]) == label_for(key, version)
