"""The read_many contract on every registered backend: ids in any order, with repeats, give
the images and labels in the caller's order.

The stores span several LMDB values and HDF5 chunks and two write batches, so reads
that group ids by value, chunk or batch and scatter them back are exercised.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import open_store
from storage.registry import BACKENDS, backend_class
from tests.strategies import examples

SHAPE = (32, 32, 3)  # CIFAR-sized: 64 images per LMDB value and per HDF5 chunk
STORED_IDS = np.concatenate([np.arange(300), np.arange(1_000, 1_100)]).astype(np.int64)
EXAMPLES = settings(max_examples=examples(20), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# Every format that stores pixel arrays directly (not raw-blob's bytes, not a container
# of shards, which only a conversion writes).
ARRAY_FORMATS = [name for name, entry in BACKENDS.items()
                 if not entry.container and backend_class(name).capabilities.arrays]


@pytest.fixture(scope="module", params=ARRAY_FORMATS)
def store(request, tmp_path_factory):
    images = np.random.default_rng(1).integers(0, 256, (len(STORED_IDS), *SHAPE), np.uint8)
    labels = np.random.default_rng(2).integers(0, 256, len(STORED_IDS))  # classic-hdf5: uint8
    path = tmp_path_factory.mktemp("order") / request.param
    with open_store(path, request.param, mode="w", durable=False) as writer:
        writer.write_many(images[:300], labels[:300], STORED_IDS[:300])  # two batches
        writer.write_many(images[300:], labels[300:], STORED_IDS[300:])
    model = {int(key): row for row, key in enumerate(STORED_IDS)}
    with open_store(path, request.param) as reader:
        yield reader, images, labels, model


def _runs(draw) -> list[int]:
    """Contiguous runs of stored ids, each maybe reversed, in any order, maybe repeated."""
    keys = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, len(STORED_IDS) - 1))
        stop = draw(st.integers(start, min(len(STORED_IDS), start + 200)))
        run = STORED_IDS[start:stop].tolist()
        keys += (run[::-1] if draw(st.booleans()) else run) * draw(st.integers(1, 2))
    return keys


key_lists = st.one_of(
    st.lists(st.sampled_from(STORED_IDS.tolist()), max_size=600),
    st.permutations(STORED_IDS.tolist()),
    st.composite(lambda draw: _runs(draw))(),
)


@pytest.mark.timeout(300)
@EXAMPLES
@given(keys=key_lists, as_array=st.booleans())
def test_read_many_returns_the_callers_order(store, keys, as_array):
    reader, images, labels, model = store
    asked = np.array(keys, dtype=np.int64) if as_array else keys
    got_images, got_labels = reader.read_many(asked)
    rows = np.array([model[key] for key in keys], dtype=np.int64)
    np.testing.assert_array_equal(got_images, images[rows].reshape(len(rows), *SHAPE),
                                  strict=True)
    np.testing.assert_array_equal(got_labels, labels[rows].astype(np.int64), strict=True)
