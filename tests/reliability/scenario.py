"""What the fault tests store, how they check a store afterwards, and how they run children.

Every image and label is a function of its id and a version number (0 when first
written, higher for overwrites), so any process can tell right pixels from wrong
ones without being told what was written. In a store of encoded images (one
created with ``encoding=``) an image is instead the encoding's signature and
noise of a length that varies with the id, the same way a function of both.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from storage import open_store
from storage.core.encodings import SIGNATURES
from storage.errors import CorruptStoreError
from tests.memory_backend import register

register()  # children of the test session know the toy format too

SHAPE = (16, 16, 3)
REPO = Path(__file__).resolve().parents[2]


def image_for(key: int, version: int = 0, encoding: str | None = None) -> np.ndarray | bytes:
    """The pixels, or with ``encoding`` the bytes, of image ``key`` at ``version``."""
    rng = np.random.default_rng([key, version])
    if encoding is None:
        return rng.integers(0, 256, SHAPE, dtype=np.uint8)
    # Mostly a few hundred bytes, every 16th some 20 KB, some ending in NUL (which
    # numpy's bytes type would drop): lengths that cross pages, blocks and chunks.
    size = int(rng.integers(0, 600 if key % 16 else 20_000))
    return SIGNATURES[encoding] + rng.bytes(size) + b"\x00" * (key % 3 == 0)


def same_image(read, expected) -> bool:
    """``read`` is ``expected``: the same pixels, or the same bytes."""
    if isinstance(expected, bytes):
        return isinstance(read, bytes) and read == expected
    return np.array_equal(read, expected)


def label_for(key: int, version: int = 0) -> int:
    return (key * 7919 + version * 104729) % 2001 - 1000


def batch_for(keys, version: int = 0, encoding: str | None = None):
    """(images, labels) of ``keys``: an array of images, or a list of bytes with ``encoding``."""
    keys = [int(key) for key in keys]
    images = [image_for(key, version, encoding) for key in keys]
    return (images if encoding else np.stack(images),
            np.array([label_for(key, version) for key in keys], np.int64))


def fill(path, backend: str, keys, version: int = 0, encoding: str | None = None,
         **options) -> None:
    """Write ``keys`` at ``version`` into the store at ``path`` (created if missing)."""
    images, labels = batch_for(keys, version, encoding)
    with open_store(path, backend, mode="a", encoding=encoding, **options) as store:
        store.write_many(images, labels, ids=list(keys), overwrite=True)


# ---- checking a store ------------------------------------------------------------------------
def assert_holds(path, committed: dict[int, int], may_hold: dict[int, set[int]] | None = None,
                 may_be_torn=frozenset()) -> dict[int, int]:
    """The store holds every id of ``committed`` at its version, else only ``may_hold``.

    ``may_hold``: ids (with the versions they may have) of a write that was cut short;
    ``may_be_torn``: ids whose reading may raise CorruptStoreError instead.
    Returns id -> version of what the store holds.
    """
    may_hold = may_hold or {}
    with open_store(path) as store:
        encoding = store.encoding
        ids = store.ids().tolist()
        assert len(store) == len(ids)
        missing = sorted(set(committed) - set(ids))
        assert not missing, f"acknowledged ids {missing[:10]} are gone"
        unexpected = sorted(set(ids) - set(committed) - set(may_hold))
        assert not unexpected, f"ids {unexpected[:10]} were never written"
        allowed = {key: {version} | may_hold.get(key, set())
                   for key, version in committed.items()}
        allowed.update({key: versions | allowed.get(key, set())
                        for key, versions in may_hold.items()})
        sound = [key for key in ids if key not in may_be_torn]
        held = _versions_read(sound, *store.read_many(sound), allowed, encoding) if sound else {}
        for key in set(ids) & set(may_be_torn):
            try:
                held.update(_versions_read([key], *store.read_many([key]), allowed, encoding))
            except CorruptStoreError:
                held[key] = -1  # torn, and the store says so
        for key in ids[:50]:  # read_one takes its own path through every backend
            if held[key] >= 0:
                image, label = store.read_one(key)
                assert same_image(image, image_for(key, held[key], encoding))
                assert label == label_for(key, held[key])
    return held


def _versions_read(keys, images, labels, allowed, encoding) -> dict[int, int]:
    held = {}
    for key, image, label in zip(keys, images, labels):
        versions = [version for version in sorted(allowed[key])
                    if label == label_for(key, version)
                    and same_image(image, image_for(key, version, encoding))]
        assert versions, f"id {key} reads back as pixels or a label that were never written"
        held[key] = versions[-1]
    return held


def assert_accepts_writes(path, backend: str) -> None:
    """The store opens for writing, takes a batch and one image, and reads everything back.

    The batch is large enough to need new space in the files, not just room left over.
    """
    with open_store(path) as store:
        encoding = store.encoding
        held = dict(zip(store.ids().tolist(), zip(*store.read_many(store.ids()))))
    with open_store(path, backend, mode="a") as store:
        first = max(held, default=-1) + 1
        store.write_many(*batch_for(range(first, first + 600), encoding=encoding),
                         ids=range(first, first + 600))
        store.write_one(first + 600, image_for(first + 600, encoding=encoding),
                        label_for(first + 600))
    with open_store(path) as store:
        images, labels = store.read_many(range(first, first + 601))
        expected_images, expected_labels = batch_for(range(first, first + 601),
                                                     encoding=encoding)
        assert all(map(same_image, images, expected_images))
        assert len(images) == len(expected_images)
        assert np.array_equal(labels, expected_labels)
        images, labels = store.read_many(list(held))
        assert all(same_image(image, held[key][0]) and label == held[key][1]
                   for key, image, label in zip(held, images, labels)), "old images changed"


# ---- child processes -------------------------------------------------------------------------
def child_command(program: str, *args) -> list[str]:
    """Run ``tests/reliability/<program>.py`` in a fresh interpreter."""
    return [sys.executable, "-m", f"tests.reliability.{program}", *map(str, args)]


def child_env(**extra) -> dict[str, str]:
    env = dict(os.environ, PYTHONFAULTHANDLER="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_child(program: str, *args, timeout: float, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *child_command(program, *args)], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)
