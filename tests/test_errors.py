"""Refused calls: each raises its typed error (and the built-in it resembles), says why,
and leaves the store as it was."""
from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from storage import open_store
from storage.errors import (DuplicateKeyError, ImageFormatError, InvalidKeyError,
                            InvalidOptionError, KeyNotFoundError, LabelError, NotAStoreError, ReadOnlyError,
                            ShapeMismatchError, StoreClosedError, StoreError, StoreExistsError,
                            StoreNotFoundError, UnknownBackendError, WrongBackendError)
from storage.registry import BACKENDS, backend_class
from tests.strategies import MAX_ID, assert_store_holds

SHAPE = (4, 5, 3)
IDS = [0, 1, 7, MAX_ID]


@dataclass
class Stored:
    path: Path
    backend: str
    images: np.ndarray
    labels: np.ndarray

    def open(self, mode="r"):
        return open_store(self.path, self.backend, mode=mode)

    def assert_intact(self, added=None) -> None:
        """Reopened from disk, the store holds what it was written with (and ``added``)."""
        model = dict(zip(IDS, zip(self.images, self.labels.tolist())))
        with open_store(self.path) as store:
            assert_store_holds(store, {**model, **(added or {})})


@pytest.fixture
def stored(backend_name, new_store_path) -> Stored:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(IDS), *SHAPE), dtype=np.uint8)
    labels = np.array([3, -(2**63), 2**63 - 1, 0], dtype=np.int64)
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        store.write_many(images, labels, IDS)
    return Stored(path, backend_name, images, labels)


@contextlib.contextmanager
def refused(error: type[StoreError], builtin: type[Exception], *words: str):
    """The block raises ``error``, catchable as ``builtin``, with ``words`` in its message."""
    assert issubclass(error, builtin)
    with pytest.raises(builtin) as caught:
        yield
    assert isinstance(caught.value, error), f"{type(caught.value).__name__}: {caught.value}"
    for word in words:
        assert word in str(caught.value), f"{word!r} not in the message {str(caught.value)!r}"


def images_of(shape=SHAPE, count=1, dtype=np.uint8):
    return np.full((count, *shape), 9, dtype=dtype)


# ---- reading ------------------------------------------------------------------------------
def test_unknown_id(stored):
    with stored.open() as store:
        with refused(KeyNotFoundError, KeyError, "id(s) 5 not in the store", str(stored.path)):
            store.read_one(5)
        with refused(KeyNotFoundError, KeyError, "id(s) 5", "not in the store"):
            store.read_many([0, 5, 1, 123456789])  # a backend may name only the first missing
        with refused(KeyNotFoundError, KeyError, "id(s) 2 not in"):
            store.read_many(range(0, 3))
        assert 5 not in store
    stored.assert_intact()


def test_unknown_id_in_an_empty_store(backend_name, new_store_path):
    with open_store(new_store_path(), backend_name, mode="w") as store:
        with refused(KeyNotFoundError, KeyError, "id(s) 0 not in"):
            store.read_one(0)
        with refused(KeyNotFoundError, KeyError, "id(s) 0 not in"):
            store.read_many([0])
        assert len(store) == 0 and store.read_many([])[0].shape[0] == 0


@pytest.mark.parametrize("key, words", [(-1, "outside [0, 2**63)"), (2**63, "outside [0, 2**63)"),
                                        (1.0, "must be an integer"), (True, "must be an integer")])
def test_invalid_id(stored, key, words):
    with stored.open("a") as store:
        with refused(InvalidKeyError, ValueError, words):
            store.read_one(key)
        with refused(InvalidKeyError, ValueError, words):
            store.write_one(key, images_of()[0], 1)
        with refused(InvalidKeyError, ValueError, "ids must"):
            store.write_many(images_of(), [1], [key])
        with refused(InvalidKeyError, ValueError, "ids must"):
            store.read_many([key])
        assert key not in store
    stored.assert_intact()


# ---- what is written ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint16, bool])
def test_wrong_dtype(stored, dtype):
    with stored.open("a") as store:
        with refused(ImageFormatError, ValueError, "must be uint8", np.dtype(dtype).name):
            store.write_many(images_of(dtype=dtype), [1], [50])
        with refused(ImageFormatError, ValueError, "must be uint8"):
            store.write_one(50, images_of(dtype=dtype)[0], 1)
    stored.assert_intact()


def test_wrong_ndim(stored):
    with stored.open("a") as store:
        with refused(ImageFormatError, ValueError, "(N, H, W, C)", "3 dimensions"):
            store.write_many(images_of()[0], [1, 2, 3, 4], [50, 51, 52, 53])
        with refused(ImageFormatError, ValueError, "(H, W, C)", "4 dimensions"):
            store.write_one(50, images_of(), 1)
        with refused(ImageFormatError, ValueError, "(H, W, C)", "2 dimensions"):
            store.write_one(50, images_of()[0, ..., 0], 1)
    stored.assert_intact()


@pytest.mark.parametrize("shape", [(4, 6, 3), (5, 4, 3), (4, 5, 1), (4, 5, 4)])
def test_wrong_shape_for_the_store(stored, shape):
    with stored.open("a") as store:
        with refused(ShapeMismatchError, ValueError, str(shape), str(SHAPE)):
            store.write_many(images_of(shape, 2), [1, 2], [50, 51])
        with refused(ShapeMismatchError, ValueError, str(shape), str(SHAPE)):
            store.write_one(50, images_of(shape)[0], 1)
        store.write_one(50, images_of()[0], 1)  # the store still takes images that fit
    stored.assert_intact(added={50: (images_of()[0], 1)})


@pytest.mark.parametrize("labels, ids, words", [
    ([1, 2], None, "3 images but 2 labels"),
    ([1, 2, 3, 4], None, "3 images but 4 labels"),
    ([1, 2, 3], [50, 51], "3 images but 2 ids"),
])
def test_mismatched_counts(stored, labels, ids, words):
    with stored.open("a") as store:
        with refused(ShapeMismatchError, ValueError, words):
            store.write_many(images_of(count=3), labels, ids)
    stored.assert_intact()


@pytest.mark.parametrize("labels", [[1.5], ["cat"], [2**63]])
def test_invalid_labels(stored, labels):
    with stored.open("a") as store:
        with refused(LabelError, ValueError, "labels must"):
            store.write_many(images_of(), labels, [50])
    stored.assert_intact()


# ---- duplicates ---------------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
def test_id_twice_within_a_batch(stored, overwrite):
    with stored.open("a") as store:
        with refused(DuplicateKeyError, ValueError, "repeat within the batch"):
            store.write_many(images_of(count=3), [1, 2, 3], [50, 51, 50], overwrite=overwrite)
        assert 50 not in store and 51 not in store
    stored.assert_intact()


def test_id_already_stored(stored):
    with stored.open("a") as store:
        # Where other writers may write at once, the ids may be theirs: never advise replacing.
        advice = "another writer may" if store.concurrent_writers else "overwrite=True"
        with refused(DuplicateKeyError, ValueError, "id(s) 7 already in the store", advice):
            store.write_many(images_of(count=2), [1, 2], [50, 7])
        assert 50 not in store  # the batch is refused whole, not in part
        with refused(DuplicateKeyError, ValueError, f"id(s) {MAX_ID} already in"):
            store.write_one(MAX_ID, images_of()[0], 1)
    stored.assert_intact()


def test_overwrite_is_not_an_error(stored):
    replacement = images_of(count=2)
    with stored.open("a") as store:
        store.write_many(replacement, [10, 11], [7, 50], overwrite=True)
        store.write_one(0, replacement[0], 12, overwrite=True)
    with stored.open() as store:
        assert len(store) == len(IDS) + 1
        images, labels = store.read_many([0, 7, 50, 1, MAX_ID])
        np.testing.assert_array_equal(images[:3], np.stack([replacement[0]] * 3), strict=True)
        np.testing.assert_array_equal(images[3:], stored.images[[1, 3]], strict=True)
        assert labels.tolist() == [12, 10, 11, *stored.labels[[1, 3]].tolist()]


def test_next_ids_past_the_int64_range(stored):
    with stored.open("a") as store:  # the store holds 2**63 - 1: no id follows it
        with refused(InvalidKeyError, ValueError, "past 2**63 - 1", "ids explicitly"):
            store.write_many(images_of(), [1])
    stored.assert_intact()


# ---- modes, paths and backends ------------------------------------------------------------
def test_write_to_a_store_opened_for_reading(stored):
    with stored.open("r") as store:
        with refused(ReadOnlyError, PermissionError, "open for reading", "mode='a'"):
            store.write_one(50, images_of()[0], 1)
        with refused(ReadOnlyError, PermissionError, "open for reading"):
            store.write_many(images_of(), [1], [50])
        with refused(ReadOnlyError, PermissionError, "open for reading"):
            store.write_many(stored.images[:1], [99], [0], overwrite=True)
    stored.assert_intact()


def test_no_store_at_the_path(backend_name, new_store_path):
    path = new_store_path()
    with refused(StoreNotFoundError, FileNotFoundError, "no store at", str(path)):
        open_store(path, backend_name, mode="r")
    with refused(StoreNotFoundError, FileNotFoundError, "no store at"):
        open_store(path)  # without a backend, nothing says which one to use
    assert not path.exists()  # reading created nothing
    path.mkdir()
    with refused(StoreNotFoundError, FileNotFoundError, "no store at"):
        open_store(path, backend_name, mode="r")
    assert list(path.iterdir()) == []


def test_a_directory_or_file_that_is_not_a_store(backend_name, new_store_path):
    path = new_store_path()
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    for mode in ("a", "w"):
        with refused(NotAStoreError, ValueError, "holds no store"):
            open_store(path, backend_name, mode=mode)
    assert [entry.name for entry in path.iterdir()] == ["notes.txt"]
    with refused(NotAStoreError, ValueError, "is a file"):
        open_store(path / "notes.txt", backend_name, mode="a")
    assert (path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("mode", ["r", "a"])
def test_store_of_another_backend(stored, mode):
    for other in (name for name in BACKENDS if name != stored.backend):
        with refused(WrongBackendError, ValueError, f"written by backend {stored.backend!r}",
                     f"not {other!r}", f"backend={stored.backend!r}"):
            open_store(stored.path, other, mode=mode)
    stored.assert_intact()


def test_mode_w_over_an_existing_store(stored):
    with refused(StoreExistsError, FileExistsError, "already exists", "mode='a'"):
        stored.open("w")
    stored.assert_intact()


def test_unknown_mode(stored):
    with pytest.raises(ValueError, match="mode must be one of"):
        stored.open("x")
    stored.assert_intact()


def test_unknown_backend_name(new_store_path):
    path = new_store_path()
    with refused(UnknownBackendError, ValueError, "unknown backend 'tiff'", "png"):
        open_store(path, "tiff", mode="w")
    with refused(UnknownBackendError, ValueError, "unknown backend None"):
        backend_class(None)
    assert not path.exists()


def test_unknown_option(backend_name, new_store_path):
    path = new_store_path()
    with refused(InvalidOptionError, TypeError, f"backend {backend_name!r} has no option 'mapsize'"):
        open_store(path, backend_name, mode="w", mapsize=2**30)
    assert not path.exists()


@pytest.mark.parametrize("backend, option, value, words", [
    ("lmdb", "map_size", "1GB", "positive number of bytes"),
    ("lmdb", "map_size", True, "positive number of bytes"),
    ("lmdb", "map_size", 0, "positive number of bytes"),
    ("png", "compression", 10, "zlib level 0..9"),
    ("png", "compression", 1.5, "zlib level 0..9"),
])
def test_option_value_not_allowed(new_store_path, backend, option, value, words):
    path = new_store_path()
    with refused(InvalidOptionError, TypeError, repr(option), words, repr(value)):
        open_store(path, backend, mode="w", **{option: value})
    assert not path.exists()


@pytest.mark.parametrize("backend, options", [("lmdb", {"map_size": 2**25}),
                                              ("png", {"compression": 6}), ("hdf5", {})])
def test_options_are_kept_and_pickled(new_store_path, backend, options):
    with open_store(new_store_path(), backend, mode="w", **options) as store:
        store.write_many(images_of(), [1])
        assert store.options == backend_class(backend).Options(**options)
        copy = pickle.loads(pickle.dumps(store))
        try:
            assert copy.options == store.options and copy.mode == "r"
            assert_store_holds(copy, {0: (images_of()[0], 1)})
        finally:
            copy.close()


def test_use_after_close(stored):
    store = stored.open("a")
    store.close()
    store.close()  # closing twice is harmless
    attempts = [lambda: store.read_one(0), lambda: store.read_many([0]), store.ids,
                lambda: len(store), lambda: 0 in store, lambda: store.image_shape,
                lambda: store.write_one(50, images_of()[0], 1),
                lambda: store.write_many(images_of(), [1], [50])]
    for attempt in attempts:
        with refused(StoreClosedError, ValueError, "is closed", str(stored.path)):
            attempt()
    assert store.closed
    stored.assert_intact()
