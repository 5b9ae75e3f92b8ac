"""Sources to convert, a shared Dask LocalCluster, and read-back checks for the convert tests."""
from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from storage import open_store
from storage.convert.single import partial_path
from storage.sharded.index import TEMPORARY_PREFIX


@pytest.fixture(scope="session")
def dask_executor():
    """One LocalCluster(2) for the tests that convert through Dask in this process."""
    from storage.convert.engines import dask_executor as start

    with start(workers=2) as executor:
        yield executor


def random_samples(count: int, shape=(8, 8, 3), seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (count, *shape), dtype=np.uint8),
            rng.integers(0, 10, count).astype(np.int64))


def make_store(path: Path, count: int, backend: str = "lmdb", shape=(8, 8, 3), seed: int = 0):
    images, labels = random_samples(count, shape, seed)
    with open_store(path, backend, "w") as store:
        store.write_many(images, labels)
    return images, labels


def sample_crcs(images, labels) -> list[int]:
    """One CRC-32 per sample over its image bytes and its label."""
    return [zlib.crc32(np.asarray(label, "<i8").tobytes(), zlib.crc32(image.tobytes()))
            for image, label in zip(images, labels)]


def read_back_crcs(path) -> list[int]:
    with open_store(path) as store:
        assert np.array_equal(store.ids(), np.arange(len(store)))
        images, labels = store.read_many(store.ids())
    return sample_crcs(images, labels)


def leftovers(path: Path) -> list[str]:
    """Temporaries and lease files a finished conversion must not leave, in it or beside it."""
    beside = [partial_path(path).name] if partial_path(path).exists() else []
    return beside + sorted(entry.name for entry in Path(path).iterdir()
                           if entry.name.startswith(TEMPORARY_PREFIX)
                           or entry.name.endswith((".lease", ".lock")))


def write_fake_cifar10(folder: Path, per_batch: int = 4, seed: int = 1):
    """The python-version layout with tiny batches; returns the training images and labels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    train_images, train_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        rows = images.transpose(0, 3, 1, 2).reshape(per_batch, -1)  # channel planes
        batch = {b"data": np.ascontiguousarray(rows), b"labels": [int(x) for x in labels]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
        if name != "test_batch":
            train_images.append(images)
            train_labels.append(labels)
    return np.concatenate(train_images), np.concatenate(train_labels)


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def write_image_folder(root: Path, per_class: int = 3, classes=("cat", "dog", "ship")):
    """PNG files in class folders; returns images and labels in the order convert reads them."""
    from PIL import Image

    rng = np.random.default_rng(2)
    images, labels = [], []
    for label, name in enumerate(sorted(classes)):
        (root / name).mkdir(parents=True)
        for number in range(per_class):
            image = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / name / f"{number:03d}.png")
            images.append(image)
            labels.append(label)
    return np.stack(images), np.array(labels, np.int64)
