"""A sharded store through the normal interface: reads, read-only writes, fork and pickle."""
from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

from storage import open_store
from storage.convert import convert
from storage.convert.engines import SerialExecutor
from storage.errors import CorruptStoreError, KeyNotFoundError, ReadOnlyError
from storage.sharded.index import INDEX
from tests.convert.conftest import make_store

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    images, labels = make_store(root / "source", 25)
    convert(root / "source", root / "out", "lmdb", shards=3, executor=SerialExecutor())
    return root / "out", images, labels


def test_writes_are_refused_with_a_typed_error(sharded):
    path, images, labels = sharded
    with open_store(path, "sharded", "a") as store:
        with pytest.raises(ReadOnlyError, match="convert"):
            store.write_many(images[:2], labels[:2])
        with pytest.raises(ReadOnlyError, match="convert"):
            store.write_one(99, images[0], 1)
    with open_store(path) as store:
        assert len(store) == 25


def test_unknown_ids_and_damaged_index_are_typed(sharded, tmp_path):
    import shutil

    path, _, _ = sharded
    with open_store(path) as store:
        with pytest.raises(KeyNotFoundError):
            store.read_many([3, 25])
        assert 24 in store and 25 not in store
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    text = (copy / INDEX).read_text()
    (copy / INDEX).write_text(text.replace('"count": 25', '"count": 26'))
    with pytest.raises(CorruptStoreError, match="CRC"):
        open_store(copy)
    (copy / INDEX).write_text(text)
    shutil.rmtree(copy / "shard-00001")
    with open_store(copy) as store:
        store.read_many(range(8))  # shard 0 is intact
        with pytest.raises(CorruptStoreError, match="shard-00001"):
            store.read_many(range(25))


def _read_in_child(store, queue):
    images, labels = store.read_many(range(len(store)))
    queue.put((images.sum(dtype=np.int64), labels.tolist()))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_read_through_an_inherited_or_pickled_store(sharded, method):
    path, images, labels = sharded
    context = multiprocessing.get_context(method)
    with open_store(path) as store:
        store.read_many(range(25))  # shards open in the parent before the child starts
        queue = context.Queue()
        child = context.Process(target=_read_in_child, args=(store, queue))
        child.start()
        total, got = queue.get(timeout=30)
        child.join(30)
        assert child.exitcode == 0
        assert total == images.sum(dtype=np.int64) and got == labels.tolist()
        store.read_many(range(25))  # the parent's handles still work
        copy = pickle.loads(pickle.dumps(store))
        np.testing.assert_array_equal(copy.read_many(range(25))[0], images)
        copy.close()


def test_shuffled_ids_read_across_shards_and_a_damaged_image_is_named(sharded, tmp_path):
    import shutil

    path, images, labels = sharded
    # Every shard, out of order, some ids twice: each shard reads its part into the
    # batch's rows, and the rows' checksums are verified together.
    ids = np.random.default_rng(3).permutation(np.r_[np.arange(25), [24, 0, 12]])
    with open_store(path) as store:
        got, got_labels = store.read_many(ids)
    np.testing.assert_array_equal(got, images[ids])
    np.testing.assert_array_equal(got_labels, labels[ids])
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    data_file = copy / "shard-00001" / "data.mdb"  # shard 1 of 3 holds ids 9..16
    data = bytearray(data_file.read_bytes())
    at = data.find(images[12].tobytes())
    assert at >= 0
    data[at + 5] ^= 0xFF
    data_file.write_bytes(bytes(data))
    with open_store(copy) as store:
        with pytest.raises(CorruptStoreError, match=r"image\(s\) 12, 12 in .*shard-00001"):
            store.read_many(ids)
        kept = ids[ids != 12]
        np.testing.assert_array_equal(store.read_many(kept)[0], images[kept])
