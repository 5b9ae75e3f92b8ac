"""The tar format's own promises: tarfile's headers, plain readers, hostile shards, leftovers."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
import webdataset

from storage import open_store
from storage.errors import CorruptStoreError, UnsafeShardError
from storage.formats.tar.layout import BLOCK, SampleLayout
from tests.reliability.scenario import assert_holds, batch_for, fill

pytestmark = pytest.mark.timeout(120)


def test_headers_are_what_tobuf_writes():
    """Headers built in bulk are byte for byte ``TarInfo.tobuf(USTAR_FORMAT)``'s."""
    layout = SampleLayout((5, 7, 3))
    ids = np.array([0, 7, 12345678901, 2**63 - 1], np.int64)
    labels = np.array([0, -3, 2**63 - 1, -2**63], np.int64)
    images = np.arange(4 * 105, dtype=np.uint8).reshape(4, 5, 7, 3)
    samples = layout.samples(ids, labels, images)
    for key, label, image, sample in zip(ids, labels, images, samples):
        npy = io.BytesIO()
        np.save(npy, image)
        for name, data, start in [(f"{key:010d}.npy", npy.getvalue(), 0),
                                  (f"{key:010d}.cls", str(label).encode(),
                                   layout.stride - 2 * BLOCK)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            assert bytes(sample[start:start + BLOCK]) == info.tobuf(tarfile.USTAR_FORMAT)
            assert bytes(sample[start + BLOCK:start + BLOCK + len(data)]) == data


def test_tar_webdataset_and_tarfile_read_the_shards(new_store_path):
    path = new_store_path()
    images, labels = batch_for(range(25))
    with open_store(path, "tar", mode="w") as store:
        store.write_many(images[:20], labels[:20])
        store.write_one(20, images[20], int(labels[20]))
        store.write_many(images[21:], labels[21:], ids=range(21, 25))
    listing = subprocess.run(["tar", "tf", str(path / "shard-000000.tar")], capture_output=True,
                             text=True, check=True)
    assert listing.stdout.split() == [f"{key:010d}.{ext}" for key in range(25)
                                      for ext in ("npy", "cls")]
    assert listing.stderr == ""  # no complaint about a missing end of archive
    with tarfile.open(path / "shard-000000.tar") as archive:
        assert all(member.isreg() and not member.pax_headers for member in archive)
    samples = list(webdataset.WebDataset(str(path / "shard-000000.tar"), shardshuffle=False)
                   .decode())
    assert [sample["__key__"] for sample in samples] == [f"{key:010d}" for key in range(25)]
    for sample, image, label in zip(samples, images, labels):
        np.testing.assert_array_equal(sample["npy"], image, strict=True)
        assert sample["cls"] == label


def test_a_store_spans_shards_at_fixed_stride(new_store_path, monkeypatch):
    """Shards fill up to SHARD_SAMPLES; a batch across shards commits whole, reads back."""
    from storage.formats.tar import backend
    monkeypatch.setattr(backend, "SHARD_SAMPLES", 8)
    path = new_store_path()
    fill(path, "tar", range(5))
    fill(path, "tar", range(5, 30))  # fills shard 0, then 1, 2 and part of 3 in one commit
    assert sorted(p.name for p in path.glob("*.tar")) == [f"shard-{n:06d}.tar" for n in range(4)]
    assert not (path / "commit.json").exists()
    layout = SampleLayout((16, 16, 3))
    assert os.path.getsize(path / "shard-000000.tar") == 8 * layout.stride + 2 * BLOCK
    with open_store(path) as store:
        images, labels = store.read_many(range(30))
        reordered, _ = store.read_many([29, 3, 17, 3])
    expected_images, expected_labels = batch_for(range(30))
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(reordered, expected_images[[29, 3, 17, 3]])


def test_an_overwrite_appends_and_wins(new_store_path):
    path = new_store_path()
    fill(path, "tar", range(10))
    fill(path, "tar", [3, 4], version=2)
    assert_holds(path, {**dict.fromkeys(range(10), 0), 3: 2, 4: 2})
    from storage.formats.tar.plain import read_plainly
    plain = read_plainly(path)
    np.testing.assert_array_equal(plain[3][0], batch_for([3], version=2)[0][0])


def test_leftovers_are_ignored_then_removed(new_store_path):
    """Index-less shards, temporary indexes and bytes past the index: unseen, then cleaned."""
    path = new_store_path()
    fill(path, "tar", range(10))
    committed = os.path.getsize(path / "shard-000000.tar")
    with open(path / "shard-000000.tar", "ab") as shard:
        shard.write(b"half a sample" * 100)
    (path / "shard-000001.tar").write_bytes(b"\0" * 5000)
    (path / "shard-000001.index.npy.new").write_bytes(b"not yet")
    assert_holds(path, dict.fromkeys(range(10), 0))  # a reader ignores them
    with open_store(path, "tar", mode="a"):
        pass  # the next writer removes them
    assert sorted(p.name for p in path.iterdir()) == [
        "shard-000000.index.npy", "shard-000000.tar", "store.json"]
    assert os.path.getsize(path / "shard-000000.tar") == committed


def test_a_journaled_commit_counts_for_readers_and_is_finished_by_the_writer(
        new_store_path, monkeypatch):
    """A kill after commit.json but before the renames: the new indexes are committed."""
    from storage.formats.tar import backend, shards
    monkeypatch.setattr(backend, "SHARD_SAMPLES", 8)
    monkeypatch.setattr(shards, "finish_commit", lambda *args, **kwargs: None)
    path = new_store_path()
    fill(path, "tar", range(20))
    assert (path / "commit.json").exists() and (path / "shard-000001.index.npy.new").exists()
    assert_holds(path, dict.fromkeys(range(20), 0))
    monkeypatch.undo()
    with open_store(path, "tar", mode="a"):
        pass
    assert not list(path.glob("*.new")) and not (path / "commit.json").exists()
    assert_holds(path, dict.fromkeys(range(20), 0))


def test_an_index_pointing_past_the_shard_is_refused(new_store_path):
    path = new_store_path()
    fill(path, "tar", range(10))
    with open(path / "shard-000000.tar", "r+b") as shard:
        shard.truncate(3 * 1024)
    with pytest.raises(CorruptStoreError, match="shorter"):
        open_store(path)


# ---- shards made elsewhere: nothing their headers say is trusted -------------------------------
def hostile_shard(path, *members) -> None:
    """A shard of one good sample (id 1) and then ``members``: (TarInfo, data or None)."""
    image, label = batch_for([1])
    npy = io.BytesIO()
    np.save(npy, image[0])
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in [("0000000001.npy", npy.getvalue()), ("0000000001.cls", b"%d" % label[0])]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)


def member(name: str, kind=tarfile.REGTYPE, data: bytes | None = b"7", **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data if kind == tarfile.REGTYPE else None


def object_npy() -> bytes:
    """A .npy header for an object array, followed by a pickle: never to be loaded."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|O", "fortran_order": False, "shape": (16, 16, 3)})
    return header.getvalue() + b"\x80\x04N."


HOSTILE = {
    "climbs out": ([member("../0000000002.cls")], "'..'"),
    "absolute name": ([member("/tmp/0000000002.cls")], "not named"),
    "symbolic link": ([member("0000000002.npy", tarfile.SYMTYPE, linkname="/etc/passwd")],
                      "symbolic link"),
    "hard link": ([member("0000000002.npy", tarfile.LNKTYPE, linkname="0000000001.npy")],
                  "hard link"),
    "character device": ([member("0000000002.npy", tarfile.CHRTYPE, devmajor=1, devminor=3)],
                         "character device"),
    "block device": ([member("0000000002.npy", tarfile.BLKTYPE, devmajor=8)], "block device"),
    "directory": ([member("0000000002", tarfile.DIRTYPE)], "directory"),
    "pickled array": ([member("0000000002.npy", data=object_npy())], "not uint8"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_shard_is_refused_before_anything_is_written(new_store_path, tmp_path, case):
    members, message = HOSTILE[case]
    path = new_store_path()
    fill(path, "tar", range(5))
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    hostile_shard(tmp_path / "hostile.tar", *members)
    with open_store(path, "tar", mode="a") as store:
        with pytest.raises(UnsafeShardError, match=message):
            store.add_shard(tmp_path / "hostile.tar")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert not (tmp_path.parent / "0000000002.cls").exists()


def test_a_size_past_the_end_is_refused(new_store_path, tmp_path):
    shard = tmp_path / "cut.tar"
    hostile_shard(shard, member("0000000002.npy", data=bytes(3000)))
    content = shard.read_bytes()
    header = content.find(b"0000000002.npy")
    shard.write_bytes(content[:header + BLOCK + 1000])  # its 3000 bytes of data cut short
    path = new_store_path()
    fill(path, "tar", range(5))
    with open_store(path, "tar", mode="a") as store:
        with pytest.raises(UnsafeShardError, match="past the end"):
            store.add_shard(shard)
    assert_holds(path, dict.fromkeys(range(5), 0))


def test_a_shard_made_elsewhere_is_added(new_store_path, tmp_path):
    """The same checks let a well-formed shard in: here, one written by another store."""
    source, path = new_store_path(), new_store_path()
    fill(source, "tar", range(100, 110))
    fill(path, "tar", range(5))
    shutil.copy(source / "shard-000000.tar", tmp_path / "elsewhere.tar")
    with open_store(path, "tar", mode="a") as store:
        assert store.add_shard(tmp_path / "elsewhere.tar") == 10
    assert_holds(path, dict.fromkeys([*range(5), *range(100, 110)], 0))


def test_encoded_samples_are_jpg_and_cls_members_across_shards(new_store_path, monkeypatch):
    """JPEG bytes of differing lengths: ``tar tf`` lists .jpg members, webdataset yields the
    bytes, shards split where the array layout's do, and a torn tail is cut by the next writer."""
    from storage.formats.tar import backend
    monkeypatch.setattr(backend, "SHARD_SAMPLES", 4)
    rng = np.random.default_rng(3)
    datas = [b"\xff\xd8\xff" + rng.bytes(size) for size in (0, 509, 510, 3000, 1, 700)]
    path = new_store_path()
    with open_store(path, "tar", mode="w", encoding="jpeg") as store:
        store.write_many(datas[:5], range(5))
    listing = subprocess.run(["tar", "tf", str(path / "shard-000000.tar")], capture_output=True,
                             text=True, check=True)
    assert listing.stdout.split() == [f"{key:010d}.{ext}" for key in range(4)
                                      for ext in ("jpg", "cls")] and listing.stderr == ""
    samples = list(webdataset.WebDataset(str(path / "shard-000000.tar"), shardshuffle=False))
    assert [(sample["jpg"], sample["cls"]) for sample in samples] == \
        [(data, str(key).encode()) for key, data in enumerate(datas[:4])]
    committed = os.path.getsize(path / "shard-000001.tar")
    with open(path / "shard-000001.tar", "ab") as shard:
        shard.write(b"half a sample" * 100)
    with open_store(path, mode="a") as store:
        assert os.path.getsize(path / "shard-000001.tar") == committed
        store.write_one(5, datas[5], 5)
        read, labels = store.read_many(range(6))
        assert read == datas and labels.tolist() == list(range(6))
    with tarfile.open(path / "shard-000001.tar") as archive:
        assert [member.name for member in archive] == [
            "0000000004.jpg", "0000000004.cls", "0000000005.jpg", "0000000005.cls"]
