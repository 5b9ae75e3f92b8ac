"""Damage that moves valid data: every piece passes its own check, but sits in the wrong place.

A data file copied over another, two files swapped, a table cut short at a row
boundary, one metadata value changed, a creator killed before its marker was in
place. Each store must read back right or raise CorruptStoreError (through the
``checker`` child, so a crash or hang fails too); wrong pixels and a wrong
``len()`` are failures. LMDB pages of an earlier commit swapped into the tree are
a documented limit (README, "What survives"), not tested as detected.
"""
from __future__ import annotations

import os
import shutil
import struct

import lmdb
import pytest

from storage import open_store
from storage.errors import StoreNotFoundError
from tests.reliability.faults import tallied
from tests.reliability.scenario import assert_holds, batch_for, fill
from tests.reliability.test_corruption import checker  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(120)
VERSIONS = dict.fromkeys(range(100), 0)


def good_outcome(answer) -> bool:
    return answer in ({"outcome": "typed", "error": "CorruptStoreError"},
                      {"outcome": "ok", "unlisted": 0})


@pytest.mark.parametrize("move", ["copy one over another", "swap two"])
def test_png_image_file_moved(new_store_path, checker, move):  # noqa: F811
    path = new_store_path()
    fill(path, "png", range(100))
    first, second = path / "images/00000042.png", path / "images/00000017.png"
    if move == "swap two":
        os.replace(first, path / "images/swap")
        os.replace(second, first)
        os.replace(path / "images/swap", second)
    else:
        shutil.copyfile(first, second)
    with tallied(f"moved: png file, {move}", "png"):
        answer = checker.ask(path, VERSIONS)
        assert answer == {"outcome": "typed", "error": "CorruptStoreError"}, answer


def test_png_name_chunk_with_a_damaged_crc(new_store_path, checker):  # noqa: F811
    """The name matches but its CRC does not: damage, not an image to read as good."""
    path = new_store_path()
    fill(path, "png", range(100))
    file = path / "images/00000017.png"
    content = bytearray(file.read_bytes())
    name_length = int.from_bytes(content[33:37], "big")  # after the signature and IHDR
    content[33 + 8 + name_length] ^= 0xFF  # the first byte of the chunk's CRC
    file.write_bytes(content)
    with tallied("damaged: png name chunk CRC", "png"):
        answer = checker.ask(path, VERSIONS)
        assert answer == {"outcome": "typed", "error": "CorruptStoreError"}, answer


def test_png_stale_image_file_of_an_earlier_version(new_store_path, checker):  # noqa: F811
    path = new_store_path()
    fill(path, "png", range(100))
    old = (path / "images/00000017.png").read_bytes()
    fill(path, "png", [17], version=1)
    (path / "images/00000017.1.png").write_bytes(old)
    with tallied("moved: png stale file", "png"):
        answer = checker.ask(path, {**VERSIONS, 17: 1}, {17: [0]})
        assert answer == {"outcome": "typed", "error": "CorruptStoreError"}, answer


@pytest.mark.parametrize("rows_left", [0, 1, 50, 99])
def test_png_table_cut_short_at_a_row(new_store_path, checker, rows_left):  # noqa: F811
    path = new_store_path()
    fill(path, "png", range(100))
    table = path / "labels.csv"
    lines = table.read_bytes().splitlines(keepends=True)
    table.write_bytes(b"".join(lines[:1 + rows_left]))
    with tallied("moved: png table cut at a row", "png"):
        answer = checker.ask(path, VERSIONS)
        assert answer == {"outcome": "typed", "error": "CorruptStoreError"}, answer


def test_png_torn_last_row_is_still_ignored(new_store_path):
    path = new_store_path()
    fill(path, "png", range(100))
    with open(path / "labels.csv", "ab") as table:
        table.write(b"100,3,images/0000")  # a row cut short by a crash: never committed
    assert_holds(path, VERSIONS)


def lmdb_put(path, database: bytes, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(path), max_dbs=2, subdir=True)
    with env.begin(write=True) as txn:
        txn.put(key, value, db=env.open_db(database, txn=txn))
    env.close()


@pytest.mark.parametrize("value", [0, 32, 65, 96, 128, 192])
def test_lmdb_images_per_chunk_changed(new_store_path, checker, value):  # noqa: F811
    path = new_store_path()
    fill(path, "lmdb", range(100))
    lmdb_put(path, b"meta", b"chunk_images", struct.pack("<I", value))
    with tallied("moved: lmdb images-per-value changed", "lmdb"):
        answer = checker.ask(path, VERSIONS)
        assert answer == {"outcome": "typed", "error": "CorruptStoreError"}, answer


@pytest.mark.parametrize("value", [0, 1, 99, 101, 1001])
def test_lmdb_count_changed(new_store_path, checker, value):  # noqa: F811
    path = new_store_path()
    fill(path, "lmdb", range(100))
    lmdb_put(path, b"meta", b"count", struct.pack("<Q", value))
    with tallied("moved: lmdb count changed", "lmdb"):
        answer = checker.ask(path, VERSIONS)
        assert good_outcome(answer), answer
    with open_store(path) as store:
        assert len(store) == 100


def test_lmdb_two_chunks_swapped(new_store_path, checker):  # noqa: F811
    path = new_store_path()
    fill(path, "lmdb", range(1000))
    env = lmdb.open(str(path), max_dbs=2, subdir=True)
    with env.begin(write=True) as txn:
        chunks = env.open_db(b"chunks", txn=txn)
        first, second = (0).to_bytes(8, "big"), (3).to_bytes(8, "big")
        a, b = bytes(txn.get(first, db=chunks)), bytes(txn.get(second, db=chunks))
        txn.put(first, b, db=chunks)
        txn.put(second, a, db=chunks)
    env.close()
    with tallied("moved: lmdb two values swapped", "lmdb"):
        answer = checker.ask(path, dict.fromkeys(range(1000), 0))
        assert answer == {"outcome": "typed", "error": "CorruptStoreError"}, answer


def test_a_creator_killed_before_its_marker_was_in_place(backend_name, tmp_path):
    """What it leaves (its temporary marker) does not block the next writer."""
    for leftover in ("store.json.tmp", "store.json.999999999.0a1b2c3d.tmp"):
        path = tmp_path / f"store-{len(leftover)}"
        path.mkdir()
        (path / leftover).write_text('{"format": "image-store"')  # cut short
        with pytest.raises(StoreNotFoundError):
            open_store(path, backend_name)
        with tallied("killed creator: leftover temp marker", backend_name):
            with open_store(path, backend_name, mode="w") as store:
                store.write_many(*batch_for(range(5)), ids=range(5))
            assert_holds(path, dict.fromkeys(range(5), 0))
            assert not (path / leftover).exists()
