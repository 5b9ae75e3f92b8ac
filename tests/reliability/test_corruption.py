"""Damaged stores: a typed error or the right data, never a crash, a hang or wrong pixels.

Hypothesis picks a file of a valid store and damages it (flips bits, zeroes a
run of bytes, cuts it short, appends garbage, or deletes it). A ``checker``
child opens the copy and reads everything, so that a segfault or a hang lands
there; the test fails on a crash, a hang (no answer in time), an exception that
is not a StoreError, or an image or label that reads back wrong.

One limit is LMDB's, and the test names it instead of hiding it: LMDB keeps its
last two commits in two meta pages without checksums, and when damage makes the
newer one look older or invalid it opens the store as of the commit before,
silently. Such a store reads back right, but one commit behind ("stale").
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import open_store
from storage.errors import CorruptStoreError
from tests.reliability.faults import facts_of, tallied
from storage.formats.lmdb.backend import chunk_images_for
from tests.reliability.scenario import (REPO, assert_holds, batch_for, child_command, child_env,
                                        fill, image_for, label_for)
from tests.strategies import examples

pytestmark = pytest.mark.timeout(240)
ANSWER_WITHIN = 20  # seconds for the checker to open and read one damaged store
HEAD = 16384  # formats keep their structure near the start: damage lands there half the time
KINDS = ("flip a bit", "flip bytes", "zero a run", "cut short", "append garbage", "delete")


class Checker:
    """The checker child, restarted after it crashes or hangs."""

    def __init__(self):
        self.process = None

    def ask(self, path: Path, versions: dict[int, int], earlier=None) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                child_command("checker"), cwd=REPO, env=child_env(), text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        request = {"path": str(path), "versions": versions, "earlier": earlier or {}}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(ANSWER_WITHIN):
                self.close()
                return {"outcome": "hang"}
        line = self.process.stdout.readline()
        if not line:
            returncode = self.process.wait()
            self.process = None
            return {"outcome": "crash", "returncode": returncode}
        return json.loads(line)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def checker():
    checker = Checker()
    yield checker
    checker.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """backend -> (a valid store, id -> version, id -> earlier versions).

    Written as a batch, single images and, last, a batch of overwrites.
    """
    stores = {}

    def get(backend: str):
        if backend not in stores:
            path = tmp_path_factory.mktemp("pristine") / backend
            fill(path, backend, range(40))
            with open_store(path, backend, mode="a") as store:
                for key in range(40, 46):
                    store.write_one(key, *[part[0] for part in batch_for([key])])
                store.write_many(*batch_for(range(10, 20), version=1), ids=range(10, 20),
                                 overwrite=True)
            versions = {key: int(10 <= key < 20) for key in range(46)}
            stores[backend] = path, versions, {key: [0] for key in range(10, 20)}
        return stores[backend]
    return get


@st.composite
def damages(draw, files: list[tuple[str, int]]):
    """(file, kind, offset, extra) for one file of the store, given (name, size) pairs.

    Files at the top of the store (tables, markers, the HDF5 and LMDB files) are
    drawn half the time, so PNG's many image files do not crowd them out.
    """
    top = [file for file in files if "/" not in file[0]]
    name, size = draw(st.one_of(st.sampled_from(top), st.sampled_from(files)))
    kind = draw(st.sampled_from(KINDS if size else ("append garbage", "delete")))
    offset = draw(st.one_of(st.integers(0, min(size, HEAD) - 1), st.integers(0, size - 1))
                  if size else st.just(0))
    extra = {"flip a bit": st.integers(0, 7), "flip bytes": st.integers(1, 64),
             "zero a run": st.integers(1, 4096),
             "append garbage": st.binary(min_size=1, max_size=256)}
    return name, kind, offset, draw(extra.get(kind, st.none()))


def damage(path: Path, name: str, kind: str, offset: int, extra) -> None:
    file = path / name
    if kind == "delete":
        file.unlink()
        return
    content = bytearray(file.read_bytes())
    if kind == "flip a bit":
        content[offset] ^= 1 << extra
    elif kind == "flip bytes":
        for position in range(offset, min(offset + extra, len(content))):
            content[position] ^= 0xA5
    elif kind == "zero a run":
        content[offset:offset + extra] = bytes(len(content[offset:offset + extra]))
    elif kind == "cut short":
        del content[offset:]
    elif kind == "append garbage":
        content += extra
    file.write_bytes(bytes(content))


@settings(max_examples=examples(60), derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_store(backend_name, pristine, checker, tmp_path_factory, data):
    source, versions, earlier = pristine(backend_name)
    files = sorted((str(file.relative_to(source)), file.stat().st_size)
                   for file in source.rglob("*") if file.is_file())
    where = data.draw(damages(files), label="damage")
    path = tmp_path_factory.mktemp("damaged") / "store"
    shutil.copytree(source, path)
    damage(path, *where)
    with tallied("corruption (hypothesis)", backend_name):
        answer = checker.ask(path, versions, earlier)
        # A format that declares it (LMDB, see above) may open as of an earlier commit.
        fine = {"typed", "ok", "stale"} if facts_of(backend_name).rolls_back_when_damaged else {
            "typed", "ok"}
        assert answer["outcome"] in fine, (where, answer)
    shutil.rmtree(path)


def test_damage_is_seen(new_store_path, backend_name, pristine, checker):
    """The checker does tell wrong data from right: a store holding other pixels fails."""
    source, versions, earlier = pristine(backend_name)
    assert checker.ask(source, versions, earlier) == {"outcome": "ok", "unlisted": 0}
    assert checker.ask(source, {**versions, 3: 5})["outcome"] == "wrong"
    assert checker.ask(source, {**versions, 3: 5}, {3: [0]})["outcome"] == "stale"
    assert os.path.exists(source)


def test_lmdb_value_under_another_key(new_store_path, checker):
    """A chunk that turns up under another key (a damaged key) is not read as other ids."""
    path = new_store_path()
    fill(path, "lmdb", range(10))
    env = lmdb.open(str(path), max_dbs=2, subdir=True)
    chunks = env.open_db(b"chunks")
    with env.begin(write=True) as txn:
        value = txn.pop((0).to_bytes(8, "big"), db=chunks)
        txn.put((5).to_bytes(8, "big"), value, db=chunks)
    env.close()
    with tallied("corruption: a value under another key", "lmdb"):
        answer = checker.ask(path, dict.fromkeys(range(10), 0))
        assert answer == {"outcome": "typed", "error": "CorruptStoreError"}, answer


def _legacy_value(value: bytes, with_key_crc: bool) -> bytes:
    """``value`` (b"IMC2") rewritten in the layout before per-image checksums (b"IMGC"):
    labels, slots, pixels under one CRC-32 over every byte from offset 16 on; the
    oldest values carry 0 in place of their key's CRC."""
    n, key_crc = struct.unpack_from("<I", value, 4)[0], struct.unpack_from("<I", value, 12)[0]
    body = value[16:16 + 8 * n] + value[16 + 16 * n:]  # drop the per-image checksums
    header = struct.pack("<4sIII", b"IMGC", n, zlib.crc32(body), key_crc if with_key_crc else 0)
    return header + body


def _rewrite_values(path, change) -> None:
    env = lmdb.open(str(path), max_dbs=2, subdir=True)
    chunks = env.open_db(b"chunks")
    with env.begin(write=True) as txn:
        for key, value in list(txn.cursor(db=chunks)):
            txn.put(key, change(int.from_bytes(key, "big"), value), db=chunks)
    env.close()


def test_lmdb_stores_of_the_layout_before_per_image_checksums_read(new_store_path):
    """Values written before (b"IMGC", one CRC-32 per value, the oldest without a key
    CRC) read back, take new images, and still report damage."""
    path = new_store_path()
    k = chunk_images_for(image_for(0).shape)
    count = 2 * k + 22  # three chunks
    fill(path, "lmdb", range(count))
    _rewrite_values(path, lambda number, value: _legacy_value(value, with_key_crc=number != 1))
    assert_holds(path, dict.fromkeys(range(count), 0))
    some = [count - 1, 3, k + 6, 3]
    with open_store(path, "lmdb") as store:
        assert np.array_equal(store.read_many(some)[0], batch_for(some)[0])
    new = range(k - 4, k + 6)  # rewrites chunks 0 and 1 in the new layout
    fill(path, "lmdb", new, version=1)
    assert_holds(path, {key: int(key in new) for key in range(count)})
    mixed = [2 * k + 3, k + 1, 2 * k + 20, k + 5]  # one by one, from new and old values
    with open_store(path, "lmdb") as store:
        images, labels = store.read_many(mixed)
    assert np.array_equal(images[[0, 2]], batch_for(mixed[::2])[0])
    assert np.array_equal(images[[1, 3]], batch_for(mixed[1::2], version=1)[0])
    assert labels.tolist() == [label_for(key, int(key in new)) for key in mixed]
    _rewrite_values(path, lambda number, value: (
        value[:-1] + bytes([value[-1] ^ 1]) if number == 2 else value))  # still b"IMGC"
    with open_store(path, "lmdb") as store:
        assert store.read_one(5)[1] == batch_for([5])[1][0]
        with pytest.raises(CorruptStoreError, match="CRC-32"):
            store.read_one(2 * k + 1)
        with pytest.raises(CorruptStoreError, match="CRC-32"):
            store.read_many([5, 2 * k + 1])


def test_lmdb_single_reads_check_their_own_image(new_store_path):
    """A damaged pixel, label or slot fails the reads of that id; its neighbours read."""
    path = new_store_path()
    n = 64
    fill(path, "lmdb", range(n))
    image_bytes = image_for(0).nbytes

    def flipped_at(offset):
        return lambda number, value: (value[:offset] + bytes([value[offset] ^ 4])
                                      + value[offset + 1:])
    for offset in (16 + 20 * n + 9 * image_bytes + 5,  # a pixel of id 9
                   16 + 8 * 9,                         # its label
                   16 + 16 * n + 4 * 9):               # its slot
        copy = new_store_path()
        shutil.copytree(path, copy)
        _rewrite_values(copy, flipped_at(offset))
        with open_store(copy, "lmdb") as store:
            assert np.array_equal(store.read_one(8)[0], batch_for([8])[0][0])
            with pytest.raises(CorruptStoreError):
                store.read_one(9)
            with pytest.raises(CorruptStoreError):
                store.read_many([8, 9])
