"""LMDB's own limits: a map that must grow, readers in other processes, reader slots."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from storage import open_store
from storage.errors import ReadersFullError
from tests.reliability.faults import tallied
from tests.reliability.scenario import (REPO, assert_holds, batch_for, child_command, child_env,
                                        fill, image_for, label_for)

pytestmark = pytest.mark.timeout(120)
TINY_MAP = 64 * 1024  # 16 pages: a few images fill it


def test_a_tiny_map_grows_by_itself(new_store_path):
    path = new_store_path()
    with open_store(path, "lmdb", mode="w", map_size=TINY_MAP) as store:
        for key in range(100):  # one image at a time
            store.write_one(key, image_for(key), label_for(key))
        keys = range(100, 6100)  # one batch of 4.6 MB, 70 times the first map
        store.write_many(*batch_for(keys), ids=keys)
        assert store._env.info()["map_size"] > 70 * TINY_MAP
    assert_holds(path, dict.fromkeys(range(6100), 0))
    with open_store(path, "lmdb", mode="a", map_size=TINY_MAP) as store:  # reopened small
        store.write_many(*batch_for(range(6100, 6200)), ids=range(6100, 6200))
    assert_holds(path, dict.fromkeys(range(6200), 0))


def test_a_batch_past_the_map_is_written_once(new_store_path):
    """The map grows before the transaction: a batch is not begun, run out of map, redone."""
    path = new_store_path()
    with open_store(path, "lmdb", mode="w", map_size=TINY_MAP) as store:
        calls = []
        put_batch = store._put_batch
        store._put_batch = lambda *args: (calls.append(len(args[1])), put_batch(*args))[1]
        store.write_many(*batch_for(range(1000)), ids=range(1000))  # 47 times the map
        assert calls == [1000]
    assert_holds(path, dict.fromkeys(range(1000), 0))


def test_values_of_one_batch_differ_in_size(new_store_path):
    """A batch's values pass through one buffer: full, partial and merged values, in turn."""
    path = new_store_path()
    held = [*range(10), *range(64, 70)]
    fill(path, "lmdb", held)
    keys = [*range(10, 64), 70, 71, *range(128, 256), 300, *range(320, 384)]
    with open_store(path, "lmdb", mode="a") as store:
        store.write_many(*batch_for(keys), ids=keys)
    assert_holds(path, dict.fromkeys([*held, *keys], 0))


def test_a_reader_in_another_process_follows_the_growing_map(new_store_path, tmp_path):
    """The reader keeps a store object open from the start and reads on as the map grows."""
    path, stop = new_store_path(), tmp_path / "stop"
    fill(path, "lmdb", range(10), map_size=TINY_MAP)
    reader = subprocess.Popen(child_command("reader", path, stop), cwd=REPO, env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "ready\n", reader.communicate(timeout=30)[1]
        with open_store(path, "lmdb", mode="a", map_size=TINY_MAP) as store:
            for first in range(10, 4010, 500):  # each batch grows the map again
                store.write_many(*batch_for(range(first, first + 500)),
                                 ids=range(first, first + 500))
            grown = store._env.info()["map_size"]
    finally:
        stop.touch()
    out, err = reader.communicate(timeout=60)
    with tallied("reader across map growth", "lmdb"):
        assert grown > 30 * TINY_MAP
        assert reader.returncode == 0, f"{out}\n{err}"
        summary = json.loads(out.splitlines()[-1])
        assert summary["problems"] == [] and summary["counts"][-1] == 4010, summary


HOLD_EVERY_SLOT = textwrap.dedent("""
    import sys, lmdb
    env = lmdb.open(sys.argv[1], max_dbs=2, subdir=True, readonly=True)
    held = []
    try:
        while True:
            held.append(env.begin())
    except lmdb.ReadersFullError:
        print(len(held), flush=True)
    sys.stdin.read()  # hold them until told to go, or killed
""")


OPEN_AND_READ = "from storage import open_store; open_store(__import__('sys').argv[1]).ids()"


def test_running_out_of_reader_slots(new_store_path):
    """Every slot taken: a clear ReadersFullError. Slots of a killed process come back."""
    path = new_store_path()
    fill(path, "lmdb", range(10))
    store = open_store(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_EVERY_SLOT, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        slots = int(holder.stdout.readline())
        with tallied("all reader slots taken", "lmdb"):
            assert slots > 100
            with pytest.raises(ReadersFullError, match="reader slots") as caught:
                store.read_many(range(10))
            assert isinstance(caught.value, OSError)
            with open_store(path) as another, pytest.raises(ReadersFullError):
                another.ids()
            elsewhere = subprocess.run([sys.executable, "-c", OPEN_AND_READ, str(path)], cwd=REPO,
                                       env=child_env(), capture_output=True, text=True, timeout=60)
            assert "storage.errors.ReadersFullError: all LMDB reader slots" in elsewhere.stderr
            holder.kill()  # its slots stay taken until someone clears them
            holder.wait()
            images, labels = store.read_many(range(10))
            assert np.array_equal(images, batch_for(range(10))[0])
            open_store(path).close()
    finally:
        holder.kill()
        holder.wait()
        store.close()
