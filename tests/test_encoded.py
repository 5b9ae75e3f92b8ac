"""Stores of encoded images: bytes in, the same bytes out, on every format that declares
encodings; typed errors, with the store unchanged, for every kind of bad value."""
from __future__ import annotations

import dataclasses
import errno
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import open_store
from storage.core.encodings import SIGNATURES
from storage.core.facts import missing_fact
from storage.errors import (CorruptStoreError, EncodedValueError, EncodingMismatchError, InvalidOptionError,
                            StoreModeError, UnsupportedOperationError, ValueTooLargeError)
from storage.registry import BACKENDS, backend_class

MIB = 2**20
# Containers (sharded) hold encoded images too, but are written by `convert` only
# (tests/convert/test_encoded.py).
ENCODED = [name for name, entry in BACKENDS.items()
           if backend_class(name).capabilities.encodings and not entry.container]
ARRAYS_ONLY = [name for name in BACKENDS if not backend_class(name).capabilities.encodings]
JPEG, PNG = SIGNATURES["jpeg"], SIGNATURES["png"]


@pytest.fixture(params=ENCODED)
def encoded_name(request) -> str:
    """Each registered backend, references included, that holds encoded images."""
    return request.param


def value(signature: bytes) -> st.SearchStrategy[bytes]:
    """The signature, then 0 B to 1 MiB of noise: short and long, some ending in NUL."""
    length = st.one_of(st.integers(0, 64), st.integers(0, MIB - len(signature)))
    return st.builds(
        lambda size, seed, nul: signature + np.random.default_rng(seed).bytes(size)
        + (b"\x00" if nul else b""),
        length, st.integers(0, 2**32 - 1), st.booleans()).map(lambda data: data[:MIB])


def batch(signature: bytes, max_size: int) -> st.SearchStrategy[list[bytes]]:
    return st.lists(value(signature), min_size=1, max_size=max_size)


def check_store(store, expected: dict[int, tuple[bytes, int]]) -> None:
    """read_many (shuffled and sorted) and read_one give back exactly ``expected``."""
    keys = np.array(sorted(expected), np.int64)
    assert list(store.ids()) == list(keys) and len(store) == len(expected)
    for order in (keys, np.random.default_rng(len(keys)).permutation(keys)):
        datas, labels = store.read_many(order)
        assert [type(data) for data in datas] == [bytes] * len(order)
        assert [(data, int(label)) for data, label in zip(datas, labels)] == \
            [expected[int(key)] for key in order]
    for key in keys[:3].tolist() + keys[-3:].tolist():
        data, label = store.read_one(key)
        assert (data, label) == expected[key] and isinstance(data, bytes)


@pytest.mark.timeout(120)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.data_too_large,
                                                                HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bytes_round_trip_through_writes_reopen_and_append(encoded_name, new_store_path, data):
    encoding = data.draw(st.sampled_from(backend_class(encoded_name).capabilities.encodings))
    signature = SIGNATURES[encoding]
    first = data.draw(batch(signature, 6), "first batch")
    singles = data.draw(st.lists(value(signature), max_size=3), "one at a time")
    appended = data.draw(batch(signature, 4), "appended batch")
    path = new_store_path()
    expected = {}
    with open_store(path, encoded_name, "w", encoding=encoding) as store:
        assert store.encoding == encoding and store.image_shape is None
        for key, item in zip(store.write_many(first, range(len(first))), first):
            expected[int(key)] = (item, int(key))
        check_store(store, expected)
    assert json.loads((path / "store.json").read_text())["encoding"] == encoding
    with open_store(path, mode="a") as store:  # the encoding comes from the marker
        assert store.encoding == encoding
        if store.capabilities.write_one:
            for item in singles:
                key = 1000 + len(expected)
                store.write_one(key, item, -key)
                expected[key] = (item, -key)
        for key, item in zip(store.write_many(appended, [7] * len(appended)), appended):
            expected[int(key)] = (item, 7)
    with open_store(path) as store:
        check_store(store, expected)


@pytest.mark.timeout(60)
def test_plain_library_reads_the_encoded_layout(encoded_name, new_store_path):
    cls = backend_class(encoded_name)
    encoding = cls.capabilities.encodings[0]
    reader = cls.class_for(encoding).facts.plain_reader
    if reader is None:
        pytest.skip(missing_fact(encoded_name, "plain_reader"))
    rng = np.random.default_rng(5)
    signature = SIGNATURES[encoding]
    # 1 MiB beside a few bytes in one call, each ending in NUL.
    datas = [signature + rng.bytes(size) + b"\x00"
             for size in (0, 10, MIB - len(signature) - 1, 3)]
    path = new_store_path()
    with open_store(path, encoded_name, "w", encoding=encoding) as store:
        store.write_many(datas[:2], [1, 2], ids=[5, 9])
        store.write_many(datas[2:], [3, 4], ids=[0, 2**40])
    assert reader(path) == {5: (datas[0], 1), 9: (datas[1], 2), 0: (datas[2], 3),
                            2**40: (datas[3], 4)}


@pytest.mark.timeout(60)
def test_images_far_apart_read_back_as_bytes_in_the_order_asked(encoded_name, new_store_path):
    """A read that skips over more than a chunk of other images (flat layouts read such
    images separately) gives the same bytes objects, in order, as a dense one."""
    encoding = backend_class(encoded_name).capabilities.encodings[0]
    rng = np.random.default_rng(11)
    signature = SIGNATURES[encoding]
    datas = [signature + rng.bytes(size) + b"\x00" for size in (5, int(1.2 * MIB), 7)]
    with open_store(new_store_path(), encoded_name, "w", encoding=encoding) as store:
        store.write_many(datas, [4, 5, 6])
        got, labels = store.read_many([2, 0])
    assert [type(data) for data in got] == [bytes, bytes]
    assert got == [datas[2], datas[0]] and list(labels) == [6, 4]


@pytest.mark.timeout(60)
def test_damaged_bytes_read_as_corrupt_never_as_another_image(encoded_name, new_store_path):
    if BACKENDS[encoded_name].reference:
        pytest.skip(f"{encoded_name} is a reference: it stores no checksums")
    encoding = backend_class(encoded_name).capabilities.encodings[0]
    pattern = np.random.default_rng(9).bytes(64)
    path = new_store_path()
    with open_store(path, encoded_name, "w", encoding=encoding) as store:
        store.write_many([SIGNATURES[encoding] + pattern, SIGNATURES[encoding] + b"x"], [1, 2])
    holders = [file for file in path.rglob("*") if file.is_file()
               and pattern in file.read_bytes()]
    assert len(holders) == 1
    content = bytearray(holders[0].read_bytes())
    content[content.index(pattern) + 30] ^= 0x01
    holders[0].write_bytes(content)
    with open_store(path) as store:
        if type(store).facts.rolls_back_when_damaged and 0 not in store:
            # The damage cut the format's log short: the store as of the commit before
            # (declared), which held nothing; never other bytes.
            assert len(store) == 0 and list(store.ids()) == []
            return
        with pytest.raises(CorruptStoreError):
            store.read_many([0, 1])
        with pytest.raises(CorruptStoreError):
            store.read_one(0)
        if not type(store).facts.checks_whole_blocks:
            assert store.read_one(1) == (SIGNATURES[encoding] + b"x", 2)
        else:  # its block failed the format's own check: typed, never other bytes
            try:
                assert store.read_one(1) == (SIGNATURES[encoding] + b"x", 2)
            except CorruptStoreError:
                pass


@pytest.mark.timeout(60)
def test_hdf5_object_headers_never_straddle_a_page(new_store_path):
    """Each batch rewrites every dataset's object header in place (its size): one that
    straddled a 4 KiB page could be torn by a power cut, and the file would not open.
    Where the headers land depends on the first batch's size: a range of them."""
    import h5py
    for first in range(1, 45_000, 997):
        path = new_store_path()
        with open_store(path, "hdf5", "w", encoding="jpeg") as store:
            store.write_many([JPEG + bytes(first)] * 3, [1] * 3)
            store.write_many([JPEG + bytes(50)] * 3, [2] * 3)
        with h5py.File(path / "images.h5", "r", swmr=True, locking=False) as file:
            for name in file:
                info = h5py.h5o.get_info(file[name].id)
                start, end = info.addr, info.addr + info.hdr.space.total - 1
                assert start // 4096 == end // 4096, \
                    f"first batch of 3x{first} B: /{name}'s header spans bytes {start}-{end}"


@pytest.mark.timeout(60)
def test_a_leveldb_value_changed_beneath_leveldbs_checks_fails_its_crc(new_store_path):
    """LevelDB's own CRCs cover what it wrote; ours cover what the store wrote: a value
    rewritten through plyvel, or moved under another id, reads as CorruptStoreError."""
    import plyvel
    path = new_store_path()
    with open_store(path, "leveldb", "w", encoding="jpeg") as store:
        store.write_many([JPEG + b"first", JPEG + b"second"], [1, 2])
    db = plyvel.DB(str(path / "leveldb"))
    first, second = (b"image:" + key.to_bytes(8, "big") for key in (0, 1))
    value = db.get(first)
    db.put(second, value)  # intact, but under another id
    db.put(first, value[:-1] + bytes([value[-1] ^ 0x01]))
    db.close()
    with open_store(path) as store:
        for key in (0, 1):
            with pytest.raises(CorruptStoreError, match=f"id {key} .* CRC"):
                store.read_one(key)


@pytest.mark.timeout(60)
def test_a_zarr_write_cut_before_its_commit_record_leaves_what_was_committed(
        new_store_path, monkeypatch):
    from storage.formats.zarr import FileStore
    path = new_store_path()
    with open_store(path, "zarr", "w", encoding="jpeg") as store:
        store.write_many([JPEG + b"a", JPEG + b"b"], [1, 2])
        store.write_one(0, JPEG + b"A\x00", 3, overwrite=True)  # appends a newer row
    real_set = FileStore.set

    async def cut_at_the_commit_record(self, key, value):
        if key == "zarr.json":  # the group's metadata holds the commit record
            raise OSError(errno.EIO, "cut")
        await real_set(self, key, value)

    monkeypatch.setattr(FileStore, "set", cut_at_the_commit_record)
    with open_store(path, mode="a") as store:
        with pytest.raises(OSError, match="cut"):
            store.write_many([JPEG + b"lost" * 1000, JPEG + b"too"], [8, 9])
    monkeypatch.undo()
    expected = {0: (JPEG + b"A\x00", 3), 1: (JPEG + b"b", 2)}
    with open_store(path, mode="a") as store:
        check_store(store, expected)
        store.write_many([JPEG + b"c"], [4])  # over the cut write's leftover bytes and rows
    with open_store(path) as store:
        check_store(store, {**expected, 2: (JPEG + b"c", 4)})


@pytest.mark.timeout(60)
def test_damaged_zarr_chunks_and_metadata_are_corrupt_for_readers_and_writers(new_store_path):
    def damaged(target: str, truncate: bool):
        path = new_store_path()
        with open_store(path, "zarr", "w", encoding="png") as store:
            store.write_many([PNG + bytes([i]) * 100 for i in range(5)], range(5))
        file = path / "data.zarr" / target
        if truncate:
            file.write_bytes(file.read_bytes()[:-50])
        else:
            file.unlink()
        return path

    path = damaged("bytes/c/0", truncate=True)  # the chunk a next write extends
    for mode in ("r", "a"):
        with open_store(path, mode=mode) as store:
            with pytest.raises(CorruptStoreError):
                store.read_many([0])
            if mode == "a":
                with pytest.raises(CorruptStoreError):
                    store.write_many([PNG], [0])
    with open_store(path) as store:
        assert len(store) == 5  # the failed write left nothing
    for target, truncate in (("crcs/c/0", True), ("zarr.json", False)):  # zstd; the group
        path = damaged(target, truncate)
        for mode in ("r", "a"):
            with pytest.raises(CorruptStoreError):
                open_store(path, mode=mode)


@pytest.fixture
def encoded_store(encoded_name, new_store_path):
    """A JPEG store holding two images; yields it and what it holds."""
    encoding = backend_class(encoded_name).capabilities.encodings[0]
    signature = SIGNATURES[encoding]
    held = {0: (signature + b"a", 1), 1: (signature + b"b\x00", 2)}
    store = open_store(new_store_path(), encoded_name, "w", encoding=encoding)
    store.write_many([held[0][0], held[1][0]], [1, 2])
    yield store, held, signature
    store.close()


def bad_batches(signature: bytes):
    other = PNG if signature == JPEG else JPEG
    good = signature + b"ok"
    return [
        ([good, 42], EncodedValueError, "value 1 is of type int"),
        ([good, "text"], EncodedValueError, "value 1 is of type str"),
        ([good, good, b""], EncodedValueError, "value 2 is empty"),
        ([other + b"x"], EncodedValueError, "value 0 starts"),
        ([good, np.zeros((4, 4, 3), np.uint8)], StoreModeError, "value 1 is an array"),
        (np.zeros((2, 4, 4, 3), np.uint8), StoreModeError, "takes a sequence"),
    ]


@pytest.mark.timeout(60)
def test_bad_values_are_refused_by_index_and_leave_the_store_unchanged(encoded_store):
    store, held, signature = encoded_store
    for values, error, words in bad_batches(signature):
        with pytest.raises(error, match=words):
            store.write_many(values, range(len(values)))
        if len(values) and isinstance(values, list):
            with pytest.raises(error):
                store.write_one(50, values[-1], 0)
    check_store(store, held)


@pytest.mark.timeout(60)
def test_a_value_over_the_formats_limit_is_refused(encoded_store, monkeypatch):
    store, held, signature = encoded_store
    cls = type(store)
    monkeypatch.setattr(cls, "capabilities",
                        dataclasses.replace(cls.capabilities, max_value_bytes=100))
    with pytest.raises(ValueTooLargeError, match="value 1 is 101 bytes, over .* limit of 100"):
        store.write_many([signature, signature + bytes(101 - len(signature))], [0, 0])
    store.write_many([signature + bytes(100 - len(signature))], [3], ids=[3])  # at the limit
    check_store(store, {**held, 3: (signature + bytes(100 - len(signature)), 3)})


@pytest.mark.timeout(60)
def test_bytes_into_an_array_store_are_refused(new_store_path):
    with open_store(new_store_path(), "lmdb", "w") as store:
        store.write_many(np.zeros((1, 2, 2, 3), np.uint8), [0])
        for images in ([JPEG + b"x"], JPEG + b"x", [np.zeros((2, 2, 3), np.uint8), b"x"]):
            with pytest.raises(StoreModeError, match="holds pixel arrays"):
                store.write_many(images, [0] * (1 if isinstance(images, bytes) else len(images)))
        with pytest.raises(StoreModeError):
            store.write_one(1, JPEG + b"x", 0)
        assert len(store) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ARRAYS_ONLY)
def test_a_format_without_encodings_refuses_an_encoded_store(name, new_store_path):
    path = new_store_path()
    with pytest.raises(UnsupportedOperationError, match="cannot store encoded jpeg images"):
        open_store(path, name, "w", encoding="jpeg")
    assert not (path / "store.json").exists()


@pytest.mark.timeout(60)
def test_encodings_are_checked_and_kept(new_store_path):
    with pytest.raises(InvalidOptionError, match="encoding must be"):
        open_store(new_store_path(), "lmdb", "w", encoding="gif")
    path = new_store_path()
    with pytest.raises(UnsupportedOperationError, match="encoded images only"):
        open_store(path, "raw-blob", "w")  # no arrays, and nothing created
    assert not path.exists() or not any(path.iterdir())
    with open_store(path, "raw-blob", "w", encoding="png"):
        pass
    with pytest.raises(EncodingMismatchError, match="holds encoded png images, not jpeg"):
        open_store(path, mode="a", encoding="jpeg")
    arrays = new_store_path()
    with open_store(arrays, "hdf5", "w"):
        pass
    assert "encoding" not in json.loads((arrays / "store.json").read_text())  # as old stores
    with pytest.raises(EncodingMismatchError, match="holds pixel arrays"):
        open_store(arrays, "hdf5", "a", encoding="jpeg")
