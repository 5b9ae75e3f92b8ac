"""Threads and processes racing on one store: no hang, no lost or mismatched image.

Over every registered format: one writer and several readers on one store
object and on separate objects; opening while a write is in progress; writer
threads sharing one object; two writer processes appending with automatic ids;
two processes creating one store; reader processes beside an overwriter. Each
asserts that nothing hangs (every run is bounded), that no acknowledged image is
lost, that no image comes back with another version's label, and that a healthy
store never reads as CorruptStoreError.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from storage import StoreError, open_store
from storage.errors import StoreBusyError
from storage.registry import backend_class
from tests.reliability.faults import tallied
from tests.reliability.racer import tagged
from tests.reliability.scenario import (REPO, batch_for, child_command, child_env, fill,
                                        image_for, label_for)

pytestmark = pytest.mark.timeout(180)
JOIN = 60  # seconds a thread may take before the test calls it a hang
KEYS = range(60)


def run_threads(*targets) -> list[BaseException]:
    """Run each target in a thread; fail on a hang; return what they raised."""
    errors: list[BaseException] = []

    def guarded(target):
        try:
            target()
        except BaseException as error:  # reported by the test
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(target,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive(), "a thread hung"
    return errors


def check_versions(keys, images, labels, versions=range(8)) -> None:
    """Each image and its label belong to one and the same version of that id."""
    for key, image, label in zip(keys, images, labels):
        assert any(label == label_for(key, version) and np.array_equal(image, image_for(key, version))
                   for version in versions), f"id {key}: image and label of no one version"


@pytest.fixture(autouse=True)
def _shared_store(backend_name):
    if not backend_class(backend_name).facts.shared_between_objects:
        pytest.skip(f"backend {backend_name!r} declares that its store objects do not share "
                    "one store (facts.shared_between_objects=False)")


@pytest.mark.parametrize("readers_own", [False, True], ids=["one object", "separate objects"])
def test_readers_beside_an_overwriting_thread(backend_name, new_store_path, readers_own):
    path = new_store_path()
    fill(path, backend_name, KEYS)
    done = threading.Event()
    with open_store(path, backend_name, mode="a", durable=False) as writer:
        def overwrite():
            try:
                for version in range(1, 8):
                    for start in range(0, len(KEYS), 20):
                        keys = list(KEYS[start:start + 20])
                        writer.write_many(*batch_for(keys, version), ids=keys, overwrite=True)
            finally:
                done.set()

        def read(seed):
            rng = np.random.default_rng(seed)
            store = open_store(path) if readers_own else writer
            try:
                while not done.is_set():
                    keys = rng.choice(len(KEYS), 8, replace=False).tolist()
                    check_versions(keys, *store.read_many(keys))
                    key = keys[0]
                    image, label = store.read_one(key)
                    check_versions([key], [image], [label])
            finally:
                if readers_own:
                    store.close()

        with tallied(f"threads: readers+overwriter, {'own' if readers_own else 'one'} object",
                     backend_name):
            errors = run_threads(overwrite, *(lambda seed=seed: read(seed) for seed in range(3)))
            assert not errors, errors[:3]
    with open_store(path) as store:
        check_versions(list(KEYS), *store.read_many(list(KEYS)), versions=[7])


def test_opening_while_a_write_is_in_progress(backend_name, new_store_path):
    """A thread opens the store again and again while another thread of its process writes."""
    path = new_store_path()
    fill(path, backend_name, range(10))
    child = spawn("open-during-write", path, backend_name)
    with tallied("threads: opening during a write", backend_name):
        try:
            out, err = child.communicate(timeout=JOIN)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            pytest.fail("opening the store while a thread wrote hung")
        assert child.returncode == 0, err[-2000:]
        assert json.loads(out)["errors"] == []
    with open_store(path) as store:
        assert len(store) == 10 + 8 * 200


def test_writer_threads_share_one_object(backend_name, new_store_path):
    """Appends (automatic ids) and overwrites from threads on one object take turns."""
    path = new_store_path()
    fill(path, backend_name, KEYS)
    acked: list[tuple[list[int], int, int]] = []
    with open_store(path, backend_name, mode="a", durable=False) as store:
        def append(tag):
            for batch in range(5):
                ids = store.write_many(*tagged(tag, batch, 30, 16))
                acked.append((ids.tolist(), tag, batch))

        def overwrite():
            for version in range(1, 4):
                store.write_many(*batch_for(KEYS, version), ids=KEYS, overwrite=True)

        with tallied("threads: writers sharing one object", backend_name):
            errors = run_threads(lambda: append(1), lambda: append(2), overwrite)
            assert not errors, errors[:3]
    with open_store(path) as store:
        check_versions(list(KEYS), *store.read_many(list(KEYS)), versions=[3])
        assert_appended(store, acked)


def assert_appended(store, acked) -> None:
    """Every acknowledged batch is held under the ids it was given, and no two share an id."""
    every = [key for ids, _, _ in acked for key in ids]
    assert len(every) == len(set(every)), "two acknowledged batches got the same ids"
    for ids, tag, batch in acked:
        images, labels = store.read_many(ids)
        expected, expected_labels = tagged(tag, batch, len(ids), images.shape[1])
        assert np.array_equal(images, expected) and np.array_equal(labels, expected_labels), (
            f"batch {batch} of writer {tag} was replaced or lost")


def spawn(*args) -> subprocess.Popen:
    return subprocess.Popen(child_command("racer", *args), cwd=REPO, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_writer_processes_append(backend_name, new_store_path):
    """Formats with one writer at a time refuse the second with ReadOnlyError; the others
    give each batch its own ids, chosen inside its commit."""
    path = new_store_path()
    fill(path, backend_name, range(5))
    children = [spawn("append", path, backend_name, 40, 20, tag) for tag in (1, 2)]
    acked = []
    with tallied("processes: two writers appending", backend_name):
        for tag, child in zip((1, 2), children):
            out, err = child.communicate(timeout=120)
            lines = [json.loads(line) for line in out.splitlines()]
            acked += [(line["ids"], tag, line["batch"]) for line in lines]
            assert child.returncode == 0 or (
                "ReadOnlyError" in err and not lines), err[-2000:]
        assert acked
        with open_store(path) as store:
            assert_appended(store, acked)
            assert len(store) == 5 + sum(len(ids) for ids, _, _ in acked)


@pytest.mark.parametrize("mode", ["w", "a"])
@pytest.mark.parametrize("sides", [(8, 8), (8, 16)], ids=["same shape", "different shapes"])
def test_two_processes_create_one_store(backend_name, tmp_path, mode, sides):
    trials = 3  # a race: try it a few times, in the same two children (spawns are slow)
    path, start = tmp_path / "store", tmp_path / "start"
    children = [spawn("create", path, backend_name, mode, side, start, trials)
                for side in sides]
    try:
        race_creators(children, path, start, trials, backend_name, sides)
    finally:
        for child in children:  # a failed check leaves them waiting for a start file
            if child.poll() is None:
                child.kill()
                child.wait(60)


def race_creators(children, path, start, trials, backend_name, sides) -> None:
    for trial in range(trials):
        Path(f"{start}-{trial}").touch()
        with tallied(f"processes: two creators, {'same' if sides[0] == sides[1] else 'other'} shape",
                     backend_name):
            answers = []
            for child in children:
                line = child.stdout.readline()  # typed errors are printed too
                assert line, child.communicate(timeout=60)[1][-2000:]
                answers.append(json.loads(line))
            winners = [side for side, answer in zip(sides, answers) if answer["outcome"] == "ok"]
            assert winners, answers
            with open_store(f"{path}-{trial}") as store:
                assert store.image_shape[0] in winners and len(set(winners)) == 1, answers
                for side, answer in zip(sides, answers):
                    if answer["outcome"] == "ok":
                        images, labels = store.read_many(answer["ids"])
                        assert np.array_equal(images, tagged(side % 256, 0, 4, side)[0])
    for child in children:
        _out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err[-2000:]


def test_reader_processes_beside_an_overwriter(backend_name, new_store_path, tmp_path):
    """Readers that reopen the store for every read, as the README advises.

    A format that allows one process per store (``capabilities.processes == "one"``)
    refuses whichever process comes second with StoreBusyError: then every problem a
    reader meets must be that refusal, and the writer opens once the store is free.
    """
    one_process = backend_class(backend_name).capabilities.processes == "one"
    path, stop = new_store_path(), tmp_path / "stop"
    fill(path, backend_name, KEYS)
    readers = [spawn("read", path, stop) for _ in range(2)]
    try:
        for reader in readers:  # each has read once before the overwrites start
            assert reader.stdout.readline() == "ready\n", reader.communicate(timeout=30)[1]
        opener = open_when_free if one_process else open_store
        with opener(path, backend_name, mode="a", durable=False) as writer:
            for version in range(1, 8):
                for start in range(0, len(KEYS), 10):
                    keys = list(KEYS[start:start + 10])
                    writer.write_many(*batch_for(keys, version), ids=keys, overwrite=True)
    finally:
        stop.touch()
    with tallied("processes: readers beside overwriter", backend_name):
        for reader in readers:
            # Read the summary through the buffer readline() filled above: it may already
            # hold it, and communicate() reads the pipe past that buffer.
            out = reader.stdout.read()
            err = reader.communicate(timeout=60)[1]
            summary = json.loads(out)
            problems = [problem for problem in summary["problems"]
                        if not (one_process and refused_as_busy(problem))]
            assert problems == [] and summary["reads"] > 0, (summary, err[-2000:])


def refused_as_busy(problem: str) -> bool:
    """A reader's traceback that ends in the one-process refusal, saying why."""
    last = problem.strip().splitlines()[-1]
    return "StoreBusyError" in last and "one process" in last


def open_when_free(path, backend_name, **options):
    """Open a one-process store, waiting (bounded) while another process has it open."""
    deadline = time.monotonic() + JOIN
    while True:
        try:
            return open_store(path, backend_name, **options)
        except StoreBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_a_store_object_is_never_half_updated_by_a_failed_claim(backend_name, new_store_path):
    """Two objects of one process claim different shapes: one wins, the other is refused."""
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        store.write_many(*tagged(1, 0, 2, 8))
        with pytest.raises(StoreError, match="shape"):
            store.write_many(*tagged(1, 1, 2, 16))
    with open_store(path) as store:
        assert store.image_shape == (8, 8, 3) and len(store) == 2


class Rendezvous:
    """Wraps a function so that two threads calling it meet before going on: a race made
    certain. A lone caller goes on after ``patience`` seconds; after the first meeting,
    the two left together, so a later call waits only ``again`` for the other (which may
    have stopped: the loser of a create does not record a shape)."""

    def __init__(self, function, patience: float = 2.0, again: float = 0.2):
        self.function, self.barrier = function, threading.Barrier(2)
        self.patience, self.again, self.met = patience, again, False

    def __call__(self, *args, **kwargs):
        try:
            self.barrier.wait(self.again if self.met else self.patience)
            self.met = True
        except threading.BrokenBarrierError:
            self.barrier.reset()
        return self.function(*args, **kwargs)


def test_two_objects_append_at_the_same_moment(backend_name, new_store_path, monkeypatch):
    """Both look for the next free id at once; each batch still gets ids of its own."""
    path = new_store_path()
    fill(path, backend_name, range(5))
    cls = backend_class(backend_name)
    monkeypatch.setattr(cls, "_next_id", Rendezvous(cls._next_id))
    first = open_store(path, backend_name, mode="a", durable=False)
    try:
        second = open_store(path, backend_name, mode="a", durable=False)
    except StoreError as error:  # one writer at a time: the README's guarantee
        first.close()
        assert type(error).__name__ == "ReadOnlyError"
        return
    acked = []

    def append(store, tag):
        ids = store.write_many(*tagged(tag, 0, 20, 16))
        acked.append((ids.tolist(), tag, 0))

    with tallied("threads: two objects appending at once", backend_name):
        errors = run_threads(lambda: append(first, 1), lambda: append(second, 2))
        first.close()
        second.close()
        assert not errors, errors
        with open_store(path) as store:
            assert_appended(store, acked)


@pytest.mark.parametrize("sides", [(8, 8), (8, 16)], ids=["same shape", "different shapes"])
@pytest.mark.parametrize("mode", ["w", "a"])
def test_two_creators_at_the_same_moment(backend_name, tmp_path, monkeypatch, mode, sides):
    """Both write store.json at once (creating it, then recording a shape)."""
    import storage.core.marker as marker
    monkeypatch.setattr(marker, "write_json_atomically", Rendezvous(marker.write_json_atomically))
    path = tmp_path / "store"
    outcomes = {}

    def create(side):
        try:
            with open_store(path, backend_name, mode=mode, durable=False) as store:
                outcomes[side, len(outcomes)] = store.write_many(*tagged(side, 0, 4, side)).tolist()
        except StoreError as error:
            outcomes[side, len(outcomes)] = type(error).__name__

    with tallied(f"threads: two creators, {'same' if sides[0] == sides[1] else 'other'} shape",
                 backend_name):
        errors = run_threads(*(lambda side=side: create(side) for side in sides))
        assert not errors, errors  # anything not typed
        winners = {side: ids for (side, _), ids in outcomes.items() if isinstance(ids, list)}
        assert len(winners) >= 1 and len(set(winners)) == 1, outcomes
        with open_store(path) as store:
            side, ids = next(iter(winners.items()))
            assert store.image_shape == (side, side, 3)
            assert np.array_equal(store.read_many(ids)[0], tagged(side, 0, 4, side)[0])
