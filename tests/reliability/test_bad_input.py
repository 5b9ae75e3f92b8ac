"""Input that is odd but valid works; hostile input gets a typed error and changes nothing.

tests/test_errors.py covers the common refusals (dtype, dimensions, counts, ids
just outside the range, wrong backend, a file as the store path). Here: arrays in
every memory layout, ids far outside the range, a PNG table edited to point
outside the store, planted symbolic links, read-only directories, and a path
inside a file. "Changes nothing" is checked byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from storage import open_store
from storage.errors import CorruptStoreError, InvalidKeyError, NotAStoreError, StoreError
from tests.reliability.faults import tallied
from tests.reliability.scenario import (SHAPE, assert_holds, batch_for, fill, image_for,
                                        label_for, run_child)

pytestmark = pytest.mark.timeout(120)


def snapshot(path) -> dict[str, str]:
    """SHA-256 of every file in the store (LMDB's lock file changes with every reader)."""
    return {str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest()
            for file in sorted(path.rglob("*")) if file.is_file() and file.name != "lock.mdb"}


def layouts(images: np.ndarray) -> dict[str, np.ndarray]:
    """The same images in memory layouts other than a plain C-contiguous array."""
    wide = np.zeros((len(images), SHAPE[0], SHAPE[1] * 2, SHAPE[2] + 1), np.uint8)
    wide[:, :, ::2, :SHAPE[2]] = images
    read_only = images.copy()
    read_only.flags.writeable = False
    reversed_twice = images[::-1].copy()[::-1]
    return {
        "strided": wide[:, :, ::2, :SHAPE[2]],
        "fortran order": np.asfortranarray(images),
        "negative strides": reversed_twice,
        "read-only": read_only,
        "read-only view of bytes": np.frombuffer(images.tobytes(), np.uint8).reshape(images.shape),
        "channels last of channels first": np.ascontiguousarray(
            images.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1),
    }


@pytest.mark.parametrize("layout", list(layouts(batch_for([0])[0])))
def test_any_memory_layout_is_stored_as_is(backend_name, new_store_path, layout):
    keys = list(range(20))
    images, labels = batch_for(keys)
    odd_images = layouts(images)[layout]
    odd_labels = np.repeat(labels, 2)[::2]  # strided labels
    odd_ids = np.array(keys)[::-1].copy()[::-1]
    odd_ids.flags.writeable = False
    path = new_store_path()
    with open_store(path, backend_name, mode="w") as store:
        store.write_many(odd_images[:15], odd_labels[:15], odd_ids[:15])
        for key in keys[15:]:
            store.write_one(key, odd_images[key], odd_labels[key])
    assert_holds(path, dict.fromkeys(keys, 0))


IDS_OUT_OF_RANGE = {
    "uint64 max": np.array([2**64 - 1], np.uint64),
    "int64 min": np.array([-(2**63)], np.int64),
    "python int 10**30": [10**30],
    "minus 10**30": [-(10**30)],
    "float": [1.5],
    "nan": [float("nan")],
    "string": ["5"],
    "2-D": [[1]],  # each id is fine, the shape is not
}


@pytest.mark.parametrize("ids", list(IDS_OUT_OF_RANGE))
def test_ids_far_outside_the_range(backend_name, new_store_path, ids):
    path = new_store_path()
    fill(path, backend_name, range(10))
    before = snapshot(path)
    bad = IDS_OUT_OF_RANGE[ids]
    with open_store(path, backend_name, mode="a") as store:
        with pytest.raises(StoreError) as caught:
            store.write_many(*batch_for([0]), ids=bad)
        assert isinstance(caught.value, ValueError), caught.value
        with pytest.raises(StoreError):
            store.read_many(bad)
        if ids != "2-D":
            with pytest.raises(InvalidKeyError):
                store.read_one(bad[0])
    assert snapshot(path) == before


def test_the_largest_ids_stay_inside_the_store(backend_name, new_store_path):
    """Ids up to 2**63 - 1 are stored (PNG names them with 19 digits, inside images/)."""
    path = new_store_path()
    keys = [2**63 - 1, 2**63 - 2, 2**40, 0]
    fill(path, backend_name, keys)
    assert_holds(path, dict.fromkeys(keys, 0))
    inside = os.path.realpath(path)
    assert all(os.path.realpath(file).startswith(inside + os.sep) for file in path.rglob("*"))


def png_row(key, label, file) -> str:
    body = f"{key},{label},{file}"
    return f"{body},{zlib.crc32(body.encode()):08x}\n"


ESCAPES = ["../../outside.png", "/tmp/outside.png", "images/../../outside.png",
           "images/00000003.png/../../../outside.png", "images\\..\\..\\outside.png",
           "images/00000003.png\x00.png"]


@pytest.mark.parametrize("file", ESCAPES)
def test_png_table_row_pointing_outside_the_store(new_store_path, tmp_path, file):
    """A hand-edited labels.csv (with a valid row CRC) cannot make the store read elsewhere."""
    path = new_store_path()
    fill(path, "png", range(5))
    outside = tmp_path / "outside.png"
    shutil.copy(path / "images" / "00000003.png", outside)
    with open(path / "labels.csv", "a") as table:
        table.write(png_row(3, 1, file))
    before = snapshot(path)
    with tallied("hand-edited table row escaping the store", "png"):
        for mode in ("r", "a"):
            with pytest.raises(CorruptStoreError, match="line 7"):
                open_store(path, "png", mode=mode)
        assert snapshot(path) == before and outside.exists()


def test_png_symbolic_link_among_the_images(new_store_path, tmp_path):
    """A committed image replaced by a link to a file outside is refused, not followed."""
    path = new_store_path()
    fill(path, "png", range(5))
    outside = tmp_path / "outside.png"
    shutil.copy(path / "images" / "00000001.png", outside)
    (path / "images" / "00000002.png").unlink()
    (path / "images" / "00000002.png").symlink_to(outside)
    with open_store(path) as store:
        with pytest.raises(CorruptStoreError):
            store.read_one(2)
        assert np.array_equal(store.read_one(1)[0], image_for(1))
    # A writer removes links no row names, and never writes through one.
    (path / "images" / "00000009.png").symlink_to(outside)
    before = outside.read_bytes()
    with open_store(path, "png", mode="a") as store:
        store.write_one(9, image_for(9), label_for(9))
    assert outside.read_bytes() == before
    assert not (path / "images" / "00000009.png").is_symlink()


def test_store_path_inside_a_file(backend_name, tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(NotAStoreError, match="inside a file"):
        open_store(tmp_path / "file" / "store", backend_name, mode="a")
    assert (tmp_path / "file").read_text() == "mine"


def test_read_only_directory(backend_name):
    """Readable, not writable: reads work, every write is a ReadOnlyError, nothing changes.

    Root ignores permission bits, so as root the check runs in a child that drops
    to the user ``nobody`` (for whom a root-owned store is read-only).
    """
    as_root = os.getuid() == 0
    root = Path(tempfile.mkdtemp(prefix="read-only-"))
    try:
        root.chmod(0o755)  # nobody may enter
        path = root / "store"
        fill(path, backend_name, range(10))
        if not as_root:
            for directory, _, files in os.walk(path):
                for name in files:
                    os.chmod(os.path.join(directory, name), 0o444)
                os.chmod(directory, 0o555)
        before = snapshot(path)
        result = run_child("readonly", path, backend_name, 10,
                           *(["--as-nobody"] if as_root else []), timeout=60)
        with tallied("read-only directory", backend_name):
            assert result.returncode == 0, result.stderr
            summary = json.loads(result.stdout)
            assert summary["uid"] != 0
            assert summary["read"] == "no error"
            for write in ("write_many", "write_one", "create"):
                assert summary[write].startswith("ReadOnlyError:"), summary
            assert snapshot(path) == before
    finally:
        for directory, _, _ in os.walk(root):
            os.chmod(directory, 0o755)
        shutil.rmtree(root)


# ---- input that slipped through, or met an untyped error or a misleading message -------------
from storage.errors import (ImageFormatError, InvalidOptionError, LabelError,  # noqa: E402
                            ShapeMismatchError)

IMAGE = batch_for([0])[0][0]
BAD_CALLS = {
    "bool among ids read": (lambda s: s.read_many([0, True]), InvalidKeyError, "bool"),
    "bool among ids written": (lambda s: s.write_many(*batch_for([50, 51]), ids=[50, True]),
                               InvalidKeyError, "bool"),
    "bool among labels": (lambda s: s.write_many(batch_for([50, 51])[0], [1, True], ids=[50, 51]),
                          LabelError, "bool"),
    "bytes as ids": (lambda s: s.read_many(b"\x02\x03"), InvalidKeyError, "bytes"),
    "a set of ids": (lambda s: s.read_many({1, 2}), InvalidKeyError, "sorted"),
    "ragged images": (lambda s: s.write_many([IMAGE, np.zeros((8, 8, 3), np.uint8)], [1, 2]),
                      ImageFormatError, "differ in shape"),
    "a range past int64": (lambda s: s.read_many(range(0, 2**64)), InvalidKeyError, "outside"),
    "a range too long to read": (lambda s: s.read_many(range(0, 2**62)), InvalidKeyError,
                                 "at once"),
    "huge ids": (lambda s: s.read_many([2**63, 1]), InvalidKeyError, "int64"),
    "huge labels": (lambda s: s.write_many(batch_for([50, 51])[0], [2**63, 1], ids=[50, 51]),
                    LabelError, "int64"),
    "a slice as ids": (lambda s: s.read_many(slice(0, 3)), InvalidKeyError, "range"),
    "an empty list of images": (lambda s: s.write_many([], []), ImageFormatError, "no images"),
    "an empty batch of another shape": (
        lambda s: s.write_many(np.zeros((0, 8, 8, 3), np.uint8), []), ShapeMismatchError, "shape"),
}


@pytest.mark.parametrize("call", list(BAD_CALLS))
def test_bad_call_is_refused_by_name(backend_name, new_store_path, call):
    path = new_store_path()
    fill(path, backend_name, range(10))
    before = snapshot(path)
    run, error, words = BAD_CALLS[call]
    with open_store(path, backend_name, mode="a") as store:
        with pytest.raises(error, match=words):
            run(store)
    assert snapshot(path) == before
    assert_holds(path, dict.fromkeys(range(10), 0))


BAD_OPTIONS = {
    "mode='rw'": (dict(mode="rw"), "mode must be one of"),
    "an unknown keyword": (dict(mode="w", compresion=3), "has no option 'compresion'"),
    "durable='yes'": (dict(mode="w", durable="yes"), "durable must be True or False"),
    "a path of another type": (dict(mode="w", path=3.5), "path must be a str"),
}
BACKEND_OPTIONS = {
    "png": {"compression=11": (dict(compression=11), "zlib level"),
            "compression=True": (dict(compression=True), "zlib level")},
    "lmdb": {"map_size=-1": (dict(map_size=-1), "map_size' of backend 'lmdb' must be"),
             "map_size='big'": (dict(map_size="big"), "map_size' of backend 'lmdb' must be"),
             "map_size=2**70": (dict(map_size=2**70), "map_size' of backend 'lmdb' must be"),
             "map_size=4096": (dict(map_size=4096), "map_size' of backend 'lmdb' must be")},
}


@pytest.mark.parametrize("option", list(BAD_OPTIONS))
def test_bad_option_leaves_nothing_behind(backend_name, tmp_path, option):
    """Refused before anything is created: a retry with mode='w' then works."""
    refused_before_creating(backend_name, tmp_path, *BAD_OPTIONS[option])


@pytest.mark.parametrize("backend, option", [(backend, option) for backend, options
                                             in BACKEND_OPTIONS.items() for option in options])
def test_bad_backend_option_leaves_nothing_behind(backend, tmp_path, option):
    refused_before_creating(backend, tmp_path, *BACKEND_OPTIONS[backend][option])


def refused_before_creating(backend, tmp_path, options, words) -> None:
    options = {"mode": "w", **options}
    path = options.pop("path", tmp_path / "store")
    with pytest.raises(InvalidOptionError, match=words):
        open_store(path, backend, **options)
    assert not (tmp_path / "store").exists()
    with open_store(tmp_path / "store", backend, mode="w") as store:
        store.write_many(*batch_for(range(3)))


def test_a_bytes_path_is_a_path(backend_name, tmp_path):
    with open_store(os.fsencode(tmp_path / "store"), backend_name, mode="w") as store:
        store.write_many(*batch_for(range(3)))
    assert_holds(tmp_path / "store", dict.fromkeys(range(3), 0))
