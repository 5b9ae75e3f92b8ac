"""Round trips through every backend: what goes into a store comes back unchanged.

Each property is written once and runs on every backend of ``our_backends()``
through the ``backend_name`` fixture; every example gets a fresh store path.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from hypothesis.stateful import run_state_machine_as_test

from storage import open_store
from storage.core.facts import missing_fact
from storage.errors import DuplicateKeyError, InvalidKeyError, KeyNotFoundError, ReadOnlyError
from storage.registry import backend_class
from tests.strategies import (MAX_ID, assert_store_holds, batches, ids, image_shapes, images,
                              labels)

# The fixtures are per test, not per example; that is safe here: backend_name is a
# constant and new_store_path hands out a new directory on every call.
EXAMPLES = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def model_of(*batches) -> dict[int, tuple[np.ndarray, int]]:
    """id -> (image, label) after writing ``batches`` in order (later ones replace)."""
    return {key: (image, label) for batch in batches for key, image, label in batch.items()}


def assert_read_many(store, keys, model) -> None:
    """read_many(keys) gives the model's images and labels, in the order asked."""
    got_images, got_labels = store.read_many(keys)
    rows = [int(key) for key in keys]
    want_images = (np.stack([model[key][0] for key in rows]) if rows
                   else np.zeros((0, *store.image_shape), np.uint8))
    np.testing.assert_array_equal(got_images, want_images, strict=True)
    np.testing.assert_array_equal(got_labels, np.array([model[key][1] for key in rows], np.int64),
                                  strict=True)


@EXAMPLES
@given(batch=batches())
def test_write_many_then_read_back_and_reopen(backend_name, new_store_path, batch):
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        np.testing.assert_array_equal(store.write_many(batch.images, batch.labels, batch.ids),
                                      batch.ids)
        assert store.image_shape == batch.images.shape[1:]
        assert_store_holds(store, model_of(batch))
    with open_store(path) as store:  # the backend is read from the store's marker
        assert store.name == backend_name
        assert_store_holds(store, model_of(batch))


@EXAMPLES
@given(batch=batches())
def test_write_one_at_a_time_then_read_many(backend_name, new_store_path, batch):
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        for key, image, label in batch.items():
            store.write_one(key, image, label)
        assert_read_many(store, batch.ids, model_of(batch))
    with open_store(path) as store:
        assert_store_holds(store, model_of(batch))


@EXAMPLES
@given(shape=image_shapes, data=st.data())
def test_append_across_sessions(backend_name, new_store_path, shape, data):
    path = new_store_path()  # mode "a" creates the store on the first session
    model = {}
    for _ in range(data.draw(st.integers(2, 4), label="sessions")):
        batch = data.draw(batches(shape, exclude=frozenset(model)))
        with open_store(path, backend_name, mode="a") as store:
            store.write_many(batch.images, batch.labels, batch.ids)
        model.update(model_of(batch))
    with open_store(path) as store:
        assert_store_holds(store, model)


@EXAMPLES
@given(shape=image_shapes, data=st.data())
def test_write_many_without_ids_continues_after_the_largest(backend_name, new_store_path,
                                                            shape, data):
    first = data.draw(batches(shape, max_size=4, keys=st.integers(0, MAX_ID - 4)))
    more = data.draw(images(shape, data.draw(st.integers(1, 4))))
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        store.write_many(first.images, first.labels, first.ids)
    with open_store(path, backend_name, mode="a") as store:
        given_ids = store.write_many(more, np.arange(len(more)))
    expected_ids = np.arange(len(more), dtype=np.int64) + int(first.ids.max()) + 1
    np.testing.assert_array_equal(given_ids, expected_ids, strict=True)
    model = model_of(first)
    model.update({int(key): (image, i) for i, (key, image) in enumerate(zip(expected_ids, more))})
    with open_store(path) as store:
        assert_store_holds(store, model)


@EXAMPLES
@given(batch=batches(), data=st.data())
def test_overwrite_replaces_image_and_label(backend_name, new_store_path, batch, data):
    shape = batch.images.shape[1:]
    chosen = data.draw(st.lists(st.sampled_from(batch.ids.tolist()), min_size=1, unique=True))
    new_images = data.draw(images(shape, len(chosen)))
    new_labels = data.draw(st.lists(labels, min_size=len(chosen), max_size=len(chosen)))
    by_one = data.draw(st.integers(0, len(chosen)), label="written by write_one")
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        store.write_many(batch.images, batch.labels, batch.ids)
    model = model_of(batch)
    model.update(zip(chosen, zip(new_images, new_labels)))
    with open_store(path, backend_name, mode="a") as store:
        for key, image, label in zip(chosen[:by_one], new_images, new_labels):
            store.write_one(key, image, label, overwrite=True)
        if by_one < len(chosen):
            store.write_many(new_images[by_one:], new_labels[by_one:], chosen[by_one:],
                             overwrite=True)
        assert_store_holds(store, model)
    with open_store(path) as store:
        assert_store_holds(store, model)


@EXAMPLES
@given(batch=batches(), data=st.data())
def test_read_many_in_any_order_with_repeats(backend_name, new_store_path, batch, data):
    keys = data.draw(st.lists(st.sampled_from(batch.ids.tolist()), max_size=3 * len(batch.ids)))
    with open_store(new_store_path(), backend_name, mode="w") as store:
        store.write_many(batch.images, batch.labels, batch.ids)
        assert_read_many(store, keys, model_of(batch))
        assert_read_many(store, np.array(keys, dtype=np.int64), model_of(batch))


@EXAMPLES
@given(shape=image_shapes, start=ids, step=st.integers(1, 1000), data=st.data())
def test_read_many_with_a_range(backend_name, new_store_path, shape, start, step, data):
    count = data.draw(st.integers(1, 12))
    start = min(start, MAX_ID - (count - 1) * step)  # the last id must fit in int64
    stored = range(start, start + count * step, step)
    pixels = data.draw(images(shape, count))
    model = {key: (image, i) for i, (key, image) in enumerate(zip(stored, pixels))}
    low, high = sorted(data.draw(st.lists(st.integers(0, count), min_size=2, max_size=2)))
    with open_store(new_store_path(), backend_name, mode="w") as store:
        store.write_many(pixels, np.arange(count), ids=stored)
        assert_read_many(store, stored, model)
        assert_read_many(store, stored[low:high], model)
        assert_read_many(store, stored[low:high][::-1], model)


class StoreMachine(RuleBasedStateMachine):
    """One store driven by random operations, checked against a dict of what it must hold."""

    def __init__(self, backend: str, new_path):
        super().__init__()
        self.backend, self.path = backend, new_path()
        self.model: dict[int, tuple[np.ndarray, int]] = {}

    @initialize(shape=image_shapes)
    def create(self, shape):
        self.shape = shape
        self.store = open_store(self.path, self.backend, mode="w")

    def teardown(self):
        if hasattr(self, "store"):
            self.store.close()

    def _held(self, data) -> list[int]:
        return data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, unique=True))

    def _writable(self, attempt) -> bool:
        """False, after checking that ``attempt`` is refused, when the store is read-only."""
        if self.store.mode != "r":
            return True
        with pytest.raises(ReadOnlyError):
            attempt()
        return False

    @rule(data=st.data(), overwrite=st.booleans())
    def write_one(self, data, overwrite):
        key = data.draw(st.sampled_from(sorted(self.model)) | ids if self.model else ids)
        image, label = data.draw(images(self.shape, 1))[0], data.draw(labels)

        def write():
            self.store.write_one(key, image, label, overwrite=overwrite)
        if not self._writable(write):
            return
        if key in self.model and not overwrite:
            with pytest.raises(DuplicateKeyError):
                write()
        else:
            write()
            self.model[key] = (image, label)

    @rule(data=st.data())
    def write_many(self, data):
        batch = data.draw(batches(self.shape, exclude=frozenset(self.model)))
        if self._writable(lambda: self.store.write_many(batch.images, batch.labels, batch.ids)):
            self.store.write_many(batch.images, batch.labels, batch.ids)
            self.model.update(model_of(batch))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), overwrite=st.booleans())
    def write_many_over_held_ids(self, data, overwrite):
        """A batch mixing held and new ids: all replaced with overwrite, else nothing written."""
        held = self._held(data)
        new = data.draw(batches(self.shape, min_size=0, max_size=3,
                                exclude=frozenset(self.model)))
        keys = np.concatenate([np.array(held, np.int64), new.ids])
        pixels = np.concatenate([data.draw(images(self.shape, len(held))), new.images])
        values = np.concatenate([np.array(data.draw(st.lists(labels, min_size=len(held),
                                                             max_size=len(held))), np.int64),
                                 new.labels])

        def write():
            self.store.write_many(pixels, values, keys, overwrite=overwrite)
        if not self._writable(write):
            return
        if overwrite:
            write()
            self.model.update(zip(keys.tolist(), zip(pixels, values.tolist())))
        else:
            with pytest.raises(DuplicateKeyError):
                write()  # the model is unchanged: the new ids must not appear either

    @rule(data=st.data())
    def write_many_without_ids(self, data):
        pixels = data.draw(images(self.shape, data.draw(st.integers(1, 3))))
        next_id = max(self.model) + 1 if self.model else 0

        def write():
            return self.store.write_many(pixels, np.zeros(len(pixels), np.int64))
        if not self._writable(write):
            return
        if next_id + len(pixels) - 1 > MAX_ID:
            with pytest.raises(InvalidKeyError):
                write()
            return
        np.testing.assert_array_equal(write(), np.arange(next_id, next_id + len(pixels)))
        self.model.update((next_id + i, (image, 0)) for i, image in enumerate(pixels))

    @rule(data=st.data())
    def read_one(self, data):
        key = data.draw(ids)
        if key in self.model:
            image, label = self.store.read_one(key)
            np.testing.assert_array_equal(image, self.model[key][0], strict=True)
            assert label == self.model[key][1]
        else:
            with pytest.raises(KeyNotFoundError):
                self.store.read_one(key)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read_many(self, data):
        keys = data.draw(st.lists(st.sampled_from(sorted(self.model)), max_size=12))
        assert_read_many(self.store, keys, self.model)

    @rule(mode=st.sampled_from(["a", "r"]))
    def reopen(self, mode):
        self.store.close()
        self.store = open_store(self.path, self.backend, mode=mode)

    @rule()
    def read_everything(self):
        assert_store_holds(self.store, self.model)

    @invariant()
    def ids_match(self):
        if hasattr(self, "store"):
            assert len(self.store) == len(self.model)
            np.testing.assert_array_equal(self.store.ids(), sorted(self.model))


def test_store_behaves_like_a_dict(backend_name, new_store_path):
    run_state_machine_as_test(lambda: StoreMachine(backend_name, new_store_path),
                              settings=settings(max_examples=50, stateful_step_count=30,
                                                deadline=None))


# ---- interop: the layouts documented in each backend's docstring, read without storage ----
@settings(EXAMPLES, max_examples=20)
@given(batch=batches(), data=st.data())
def test_plain_libraries_read_what_a_backend_wrote(backend_name, new_store_path, batch, data):
    read_plainly = backend_class(backend_name).facts.plain_reader
    if read_plainly is None:
        pytest.skip(missing_fact(backend_name, "plain_reader"))
    replaced = data.draw(st.lists(st.sampled_from(batch.ids.tolist()), unique=True))
    replacements = data.draw(images(batch.images.shape[1:], len(replaced)))
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        store.write_many(batch.images, batch.labels, batch.ids)
    with open_store(path, backend_name, mode="a") as store:  # replaced in a later session
        store.write_many(replacements, np.full(len(replaced), 7), replaced, overwrite=True)
    model = model_of(batch)
    model.update((key, (image, 7)) for key, image in zip(replaced, replacements))
    plain = read_plainly(path)
    assert sorted(plain) == sorted(model)
    for key, (image, label) in model.items():
        np.testing.assert_array_equal(plain[key][0], image, strict=True)
        assert plain[key][1] == label
