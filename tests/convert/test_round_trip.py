"""Every converted store, sharded or not, reads back equal to its source (a CRC per sample)."""
from __future__ import annotations

import numpy as np
import pytest

from storage import open_store
from storage.cli.verify import verify_store
from storage.convert import convert
from storage.registry import BACKENDS, our_backends
from storage.sharded.index import INDEX, is_shard_name
from tests.convert.conftest import (
    leftovers, make_store, read_back_crcs, sample_crcs, tar_folder, write_fake_cifar10,
    write_image_folder)

pytestmark = pytest.mark.timeout(60)
# Formats Dask workers can open: not a toy registered only inside the test process.
FORMATS = [name for name in our_backends() if not BACKENDS[name].target.startswith("tests.")]


@pytest.fixture(scope="module")
def lmdb_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "store"
    images, labels = make_store(path, 40)
    return path, sample_crcs(images, labels)


# One store per format, unsharded, is converted from every format in test_formats.py.
@pytest.mark.parametrize("shards", [1, 2, 16], ids=lambda n: f"shards={n}")
@pytest.mark.parametrize("store_format", FORMATS)
def test_every_format_and_shard_count_reads_back_equal(store_format, shards, lmdb_source,
                                                      dask_executor, tmp_path):
    source, expected = lmdb_source
    destination = tmp_path / "converted"
    result = convert(source, destination, store_format, shards=shards, executor=dask_executor)
    assert read_back_crcs(destination) == expected
    assert result.count == 40 and not result.skipped
    names = sorted(entry.name for entry in destination.iterdir() if is_shard_name(entry.name))
    assert names == [f"shard-{number:05d}" for number in range(shards)]
    assert (destination / INDEX).exists() and leftovers(destination) == []
    with open_store(destination) as store:
        assert [shard.count for shard in store.index.shards] == [
            40 // shards + (number < 40 % shards) for number in range(shards)]
        assert store.index.shard_format == store_format
    assert verify_store(destination).clean


def test_shard_size_sets_the_number_of_shards(lmdb_source, dask_executor, tmp_path):
    source, expected = lmdb_source  # 40 images of 192 bytes: 7,680 bytes
    convert(source, tmp_path / "out", "lmdb", shard_size=2000, executor=dask_executor)
    with open_store(tmp_path / "out") as store:
        assert len(store.index.shards) == 4
    assert read_back_crcs(tmp_path / "out") == expected


def test_image_folder_labels_follow_sorted_class_names(tmp_path, dask_executor):
    images, labels = write_image_folder(tmp_path / "folder", classes=("ship", "cat", "dog"))
    convert(tmp_path / "folder", tmp_path / "out", "hdf5", shards=2, executor=dask_executor)
    assert read_back_crcs(tmp_path / "out") == sample_crcs(images, labels)
    with open_store(tmp_path / "out") as store:
        assert store.index.classes == ("cat", "dog", "ship")
    convert(tmp_path / "folder", tmp_path / "single", "png")
    assert read_back_crcs(tmp_path / "single") == sample_crcs(images, labels)


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar.gz"])
def test_cifar_python_batches(tmp_path, packed, dask_executor):
    images, labels = write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    source = tar_folder(tmp_path / "cifar-10-batches-py", tmp_path / "c.tar.gz") if packed \
        else tmp_path / "cifar-10-batches-py"
    convert(source, tmp_path / "out", "lmdb", shards=3, executor=dask_executor)
    assert read_back_crcs(tmp_path / "out") == sample_crcs(images, labels)


def test_a_sharded_store_converts_into_one_store(lmdb_source, dask_executor, tmp_path):
    source, expected = lmdb_source
    convert(source, tmp_path / "sharded", "png", shards=3, executor=dask_executor)
    convert(tmp_path / "sharded", tmp_path / "single", "hdf5")
    assert read_back_crcs(tmp_path / "single") == expected


def test_reads_across_shards_keep_the_order_asked(lmdb_source, dask_executor, tmp_path):
    source, _ = lmdb_source
    convert(source, tmp_path / "out", "lmdb", shards=4, executor=dask_executor)
    with open_store(source) as original, open_store(tmp_path / "out") as sharded:
        ids = np.array([39, 0, 10, 11, 25, 9, 39])
        for got, want in zip(sharded.read_many(ids), original.read_many(ids)):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(sharded.read_one(30)[0], original.read_one(30)[0])
