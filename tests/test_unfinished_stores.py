"""A store whose creation a power cut stopped before any write reached it holds nothing.

SQLite may be left with a database file whose schema was never committed, LevelDB
with a ``CURRENT`` naming a manifest it never synced. No write began (the marker
records the image shape before the first one), so readers see an empty store and
the next writer makes the database again; once a write began, the same damage is
``CorruptStoreError``. tests/powerloss cuts power there for real; these make the
two states directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import storage
from storage.errors import CorruptStoreError

pytestmark = pytest.mark.timeout(60)


def _empty_sqlite_schema(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (path / f"images.sqlite{suffix}").unlink(missing_ok=True)
    (path / "images.sqlite").write_bytes(b"")  # a database SQLite reads as empty


def _unsynced_leveldb_manifest(path: Path) -> None:
    database = path / "leveldb"
    manifest = (database / "CURRENT").read_text().strip()
    (database / manifest).write_bytes(b"")  # named by CURRENT, its bytes never written back


DAMAGE = {"sqlite": _empty_sqlite_schema, "leveldb": _unsynced_leveldb_manifest}


@pytest.mark.parametrize("backend", sorted(DAMAGE))
def test_creation_cut_short_reads_empty_and_is_made_again(backend, tmp_path):
    path = tmp_path / "store"
    storage.open_store(path, backend, mode="w").close()
    DAMAGE[backend](path)

    with storage.open_store(path, backend, mode="r") as store:
        assert len(store) == 0 and store.ids().size == 0 and 3 not in store
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    with storage.open_store(path, backend, mode="a") as store:
        store.write_many(images, [5, 6])
    with storage.open_store(path, backend, mode="r") as store:
        got, labels = store.read_many([0, 1])
    np.testing.assert_array_equal(got, images)
    assert labels.tolist() == [5, 6]


@pytest.mark.parametrize("backend", sorted(DAMAGE))
def test_the_same_damage_after_a_write_is_reported(backend, tmp_path):
    path = tmp_path / "store"
    with storage.open_store(path, backend, mode="w") as store:
        store.write_many(np.zeros((1, 4, 4, 3), np.uint8), [1])
    DAMAGE[backend](path)
    with pytest.raises(CorruptStoreError):
        with storage.open_store(path, backend, mode="r") as store:
            store.ids()
    with pytest.raises(CorruptStoreError):
        with storage.open_store(path, backend, mode="a") as store:
            store.ids()
