"""StoreDataset: what DataLoader and its worker processes need, on every registered format.

The correctness matrix reads a store through 0, 1, 2 and 4 worker processes started
by fork, and through 2 started by spawn, after the parent has used the store itself
(so fork hands the workers an open handle): every id must arrive exactly once, every
image must match the CRC of its source. Spawn with 1 and 4 workers, which only
starts more interpreters (about a second each here), runs with ``--training-spawn``.
Torch is not needed; where it is installed, a real DataLoader reads the store too.
"""
from __future__ import annotations

import pickle
import shutil
import zlib

import numpy as np
import pytest

from benchmarks.readers import read_with_workers
from storage import open_store
from storage.errors import StoreNotFoundError
from storage.registry import backend_class
from storage.training import StoreDataset
from tests.memory_backend import register as register_toy_format

COUNT = 150  # spans three LMDB values and HDF5 chunks
SHAPE = (32, 32, 3)
BATCH = 16


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One store per format for the whole module: backend -> (path, CRCs, labels)."""
    stores = {}

    def write(backend):
        if backend not in stores:
            rng = np.random.default_rng(7)
            images = rng.integers(0, 256, (COUNT, *SHAPE), np.uint8)
            labels = rng.integers(0, 10, COUNT)
            ids = np.arange(COUNT, dtype=np.int64) * 3 + 5  # ids are not positions
            path = tmp_path_factory.mktemp("training") / backend
            with open_store(path, backend, mode="w", durable=False) as store:
                store.write_many(images, labels, ids)
            crcs = {int(key): zlib.crc32(image.tobytes()) for key, image in zip(ids, images)}
            stores[backend] = path, backend, crcs, dict(zip(ids.tolist(), labels.tolist()))
        return stores[backend]
    return write


@pytest.fixture
def source(backend_name, written):
    """A store of COUNT images of the format, the CRC of each source image and its label."""
    return written(backend_name)


def _check_every_id_once(source, workers, method, tmp_path):
    path, backend, crcs, labels = source
    one_process = backend_class(backend).capabilities.processes == "one"
    if one_process:  # a copy no other test of this process holds open
        path = shutil.copytree(path, tmp_path / "copy")
    dataset = StoreDataset(path)
    first_image, first_label = dataset[0]  # the parent uses the store first
    assert zlib.crc32(first_image.tobytes()) == crcs[5] and first_label == labels[5]
    order = np.random.default_rng(workers).permutation(len(dataset))
    seen: dict[int, int] = {}
    wrong = []

    def on_batch(keys, images, batch_labels):
        for key, image, label in zip(keys.tolist(), images, batch_labels.tolist()):
            seen[key] = seen.get(key, 0) + 1
            if zlib.crc32(image.tobytes()) != crcs[key] or label != labels[key]:
                wrong.append(key)

    batches = [order[start:start + BATCH] for start in range(0, len(order), BATCH)]
    if one_process and workers:
        dataset.close()  # a store one process at a time (LevelDB): the parent lets go first
    try:
        # A spawned worker imports what the data set needs; the toy format of the tests
        # is registered by its module, which the worker imports first.
        read_with_workers(dataset, batches, workers, method, on_batch,
                          worker_init=register_toy_format if method == "spawn" else None)
    except RuntimeError as error:
        # Two workers at once are refused by such a format, with the typed error.
        if not (one_process and workers > 1 and "StoreBusyError" in str(error)):
            raise
        assert wrong == []
        return
    assert wrong == []
    assert seen == dict.fromkeys(crcs, 1)
    # The parent's handle still works after its workers read.
    assert zlib.crc32(dataset[-1][0].tobytes()) == crcs[max(crcs)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 1, 2, 4])
def test_fork_workers_read_every_id_once_and_intact(source, workers, tmp_path):
    _check_every_id_once(source, workers, "fork", tmp_path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [pytest.param(1, marks=pytest.mark.training_spawn), 2,
                                     pytest.param(4, marks=pytest.mark.training_spawn)])
def test_spawn_workers_read_every_id_once_and_intact(source, workers, tmp_path):
    _check_every_id_once(source, workers, "spawn", tmp_path)


def test_constructor_opens_nothing(tmp_path):
    dataset = StoreDataset(tmp_path / "not-yet-a-store")  # no error until first use
    with pytest.raises(StoreNotFoundError, match="no store"):
        len(dataset)


def test_samples_batches_and_transforms(source):
    path, backend, crcs, labels = source
    dataset = StoreDataset(path, backend, transform=np.flipud, target_transform=str)
    keys = dataset.ids
    assert isinstance(keys, np.ndarray) and keys.dtype == np.int64
    assert keys.tolist() == sorted(crcs) and len(dataset) == COUNT
    image, label = dataset[3]
    assert zlib.crc32(np.flipud(image).tobytes()) == crcs[int(keys[3])]
    assert label == str(labels[int(keys[3])])
    samples = dataset.__getitems__([9, 2, 9])
    assert [label for _, label in samples] == [str(labels[int(keys[i])]) for i in (9, 2, 9)]
    np.testing.assert_array_equal(samples[0][0], samples[2][0])
    with pytest.raises(IndexError):
        dataset[COUNT]


def test_a_subset_of_ids_in_the_callers_order(source):
    path, _, crcs, _ = source
    chosen = sorted(crcs)[::-7]
    dataset = StoreDataset(path, ids=chosen)
    assert dataset.ids.tolist() == chosen and len(dataset) == len(chosen)
    images, _ = dataset.read_batch(np.arange(len(chosen)))
    assert [zlib.crc32(image.tobytes()) for image in images] == [crcs[key] for key in chosen]


def test_pickle_carries_path_and_options_not_handles(source):
    path, backend, crcs, _ = source
    dataset = StoreDataset(path, backend, transform=np.flipud)
    dataset[0]  # opens the store in this process
    state = dataset.__getstate__()
    assert set(state) == {"path", "backend", "options", "ids", "transform", "target_transform"}
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._store is None  # opens on first use, in its own right
    dataset.close()  # the copy does not need the original's handle
    assert zlib.crc32(np.flipud(copy[1][0]).tobytes()) == crcs[int(dataset.ids[1])]
    copy.close()


@pytest.mark.timeout(120)
def test_a_real_dataloader_reads_every_id_once(source):
    torch = pytest.importorskip("torch", reason="torch is optional; the worker matrix stands in")
    path, _, crcs, labels = source
    dataset = StoreDataset(path, transform=np.ascontiguousarray)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=2)
    seen = []
    for images, batch_labels in loader:
        for image, label in zip(images.numpy(), batch_labels.tolist()):
            key = next(key for key, crc in crcs.items()
                       if crc == zlib.crc32(image.tobytes()) and labels[key] == label)
            seen.append(key)
    assert sorted(seen) == sorted(crcs)
