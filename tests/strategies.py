"""What the tests draw on: hypothesis strategies for store contents, the check of a store
against a plain dict, and where real CIFAR-10 lives."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from benchmarks.datasets import CIFAR_ENV

MAX_ID = 2**63 - 1


def examples(thorough: int) -> int:
    """A property's example count: ``thorough`` under the thorough profile, a share of it
    under the test command's quick one (see tests/conftest.py)."""
    return max(5, round(thorough * settings().max_examples / 100))
def share(thorough: int, at_least: int = 3) -> int:
    """How many fault cases to try: ``thorough`` under the thorough profile, the quick
    profile's share of it (at least ``at_least``) under the test command's."""
    return min(thorough, max(at_least, round(thorough * settings().max_examples / 100)))


def spread(points) -> tuple:
    """Fault points to try: all under the thorough profile; under the quick one an even
    spread of ``share(len(points))`` of them, the first and last always among them."""
    points = tuple(points)
    count = share(len(points))
    if count >= len(points):
        return points
    return tuple(points[int(i)] for i in np.unique(np.linspace(0, len(points) - 1,
                                                               count).round()))


MAX_SIDE = 40
MAX_BATCH = 8
REPO = Path(__file__).resolve().parent.parent

image_shapes = st.tuples(st.integers(1, MAX_SIDE), st.integers(1, MAX_SIDE), st.integers(1, 4))
labels = st.integers(-(2**63), 2**63 - 1)
# Dense small ids, sparse ones anywhere, and ids at the very top of the int64 range.
ids = st.one_of(st.integers(0, 64), st.integers(0, MAX_ID), st.integers(MAX_ID - 64, MAX_ID))


def images(shape: tuple[int, ...], count: int) -> st.SearchStrategy[np.ndarray]:
    """(count, *shape) uint8: hypothesis' own arrays (shrinkable), or full-entropy noise."""
    full_shape = (count, *shape)
    noise = st.integers(0, 2**32 - 1).map(
        lambda seed: np.random.default_rng(seed).integers(0, 256, full_shape, dtype=np.uint8))
    return st.one_of(hnp.arrays(np.uint8, full_shape), noise)


@dataclass
class Batch:
    """Images, labels and ids as one write_many call takes them."""
    ids: np.ndarray     # int64, distinct
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # int64

    def items(self):
        return zip(self.ids.tolist(), self.images, self.labels.tolist())


@st.composite
def batches(draw, shape=None, min_size: int = 1, max_size: int = MAX_BATCH,
            exclude=frozenset(), keys=ids) -> Batch:
    """A batch of distinct ``keys`` not in ``exclude``; of ``shape``, else a drawn one."""
    shape = shape or draw(image_shapes)
    keys = draw(st.lists(keys.filter(lambda key: key not in exclude),
                         min_size=min_size, max_size=max_size, unique=True))
    return Batch(np.array(keys, dtype=np.int64), draw(images(shape, len(keys))),
                 np.array(draw(st.lists(labels, min_size=len(keys), max_size=len(keys))),
                          dtype=np.int64))


def assert_store_holds(store, model: dict[int, tuple[np.ndarray, int]]) -> None:
    """``store`` holds exactly ``model`` (id -> (image, label)), by every way of reading."""
    assert len(store) == len(model)
    np.testing.assert_array_equal(store.ids(), np.array(sorted(model), np.int64), strict=True)
    for key, (image, label) in model.items():
        assert key in store
        got_image, got_label = store.read_one(key)
        np.testing.assert_array_equal(got_image, image, strict=True)  # shape, dtype, values
        assert got_label == label and isinstance(got_label, int)
    keys = list(model)
    got_images, got_labels = store.read_many(keys)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64
    assert len(got_images) == len(got_labels) == len(keys)
    for got_image, got_label, key in zip(got_images, got_labels.tolist(), keys):
        np.testing.assert_array_equal(got_image, model[key][0], strict=True)
        assert got_label == model[key][1]
    absent = next(key for key in (0, 1, MAX_ID, MAX_ID - 1, 12345) if key not in model)
    assert absent not in store


def real_cifar10_dir() -> Path | None:
    """The official cifar-10-batches-py folder: $CIFAR10_DIR, else the shared copy by the repo."""
    for candidate in (os.environ.get(CIFAR_ENV), REPO.parent / "shared/data/cifar-10-batches-py"):
        if candidate and (Path(candidate) / "data_batch_1").is_file():
            return Path(candidate)
    return None
