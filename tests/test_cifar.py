"""The CIFAR loader: the real files, official-format copies built here, and hostile input."""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from storage.sources.cifar import load_cifar
from storage.errors import DatasetError, UnsafePickleError
from tests.strategies import real_cifar10_dir

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

CIFAR10 = "cifar-10-batches-py"
CIFAR100 = "cifar-100-python"
TRAIN10 = [f"data_batch_{i}" for i in range(1, 6)]


class _Python2Pickler(pickle._Pickler):
    """Pickles as the official batches were written, by Python 2 and numpy 1.x.

    Python 3's protocol 2 would write bytes through ``_codecs.encode``, which no
    CIFAR file contains; Python 2 wrote them as plain str opcodes.
    """
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_python2_str(self, text):
        raw = text.encode("latin-1") if isinstance(text, str) else text
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(text)

    dispatch[bytes] = dispatch[str] = _save_python2_str

    def save_global(self, obj, name=None):
        if obj is _reconstruct:  # numpy 1.x's module name, as in the real files
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def python2_pickle(content) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(content)
    return buffer.getvalue()


def official_batch(images, labels, label_key=b"labels", extra=None) -> bytes:
    """A batch as the python-version download has it: rows are R, G, then B planes."""
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
    return python2_pickle({b"batch_label": b"training batch", label_key: labels.tolist(),
                           b"data": data, b"filenames": [b"%d.png" % i for i in range(len(data))],
                           **(extra or {})})


def write_folder(root: Path, folder: str, files: dict[str, bytes]) -> Path:
    (root / folder).mkdir(parents=True)
    for name, content in files.items():
        (root / folder / name).write_bytes(content)
    return root / folder


def write_archive(path: Path, folder: str, files: dict[str, bytes], mode="w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, content in files.items():
            member = tarfile.TarInfo(f"{folder}/{name}")
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    return path


def random_split(rng, count, classes):
    return (rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, classes, count).astype(np.int64))


@pytest.fixture(scope="module")
def fake_cifar10():
    """Official-format CIFAR-10 files of a few images each, and the arrays they hold."""
    rng = np.random.default_rng(10)
    batches = {name: random_split(rng, count, 10) for name, count in
               zip([*TRAIN10, "test_batch"], [5, 6, 7, 3, 4, 8])}
    files = {name: official_batch(*batch) for name, batch in batches.items()}
    files["batches.meta"] = python2_pickle({b"label_names": [b"airplane"] * 10,
                                            b"num_cases_per_batch": 10000, b"num_vis": 3072})
    train = [np.concatenate(parts) for parts in zip(*(batches[name] for name in TRAIN10))]
    expected = {"train": train, "test": batches["test_batch"]}
    expected["all"] = [np.concatenate(parts) for parts in zip(expected["train"], expected["test"])]
    return files, expected


def assert_loaded(loaded, expected, name):
    images, labels, loaded_name = loaded
    np.testing.assert_array_equal(images, expected[0], strict=True)
    np.testing.assert_array_equal(labels, expected[1], strict=True)
    assert images.flags.c_contiguous and loaded_name == name


# ---- official format, built here ----------------------------------------------------------
def test_fake_batches_have_the_real_pickle_structure(fake_cifar10):
    real = real_cifar10_dir()
    if real is None:
        pytest.skip("real CIFAR-10 not found ($CIFAR10_DIR or ../shared/data/cifar-10-batches-py)")

    def opcodes_and_globals(raw):
        ops = list(pickletools.genops(raw))
        return {op.name for op, _, _ in ops}, {arg for op, arg, _ in ops if op.name == "GLOBAL"}

    fake_ops, fake_globals = opcodes_and_globals(fake_cifar10[0]["test_batch"])
    real_ops, real_globals = opcodes_and_globals((real / "test_batch").read_bytes())
    assert fake_globals == real_globals
    assert fake_ops - real_ops <= {"BINGET", "NEWTRUE"}  # memo hits; True where numpy 1 wrote 1


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_cifar10_folder_and_tar_gz(fake_cifar10, tmp_path, split):
    files, expected = fake_cifar10
    folder = write_folder(tmp_path, CIFAR10, files)
    archive = write_archive(tmp_path / "cifar-10-python.tar.gz", CIFAR10, files)
    for source in (folder, tmp_path, archive):  # the folder, its parent, the download
        assert_loaded(load_cifar(source, split), expected[split], f"cifar-10 {split}")


def test_batches_pickled_by_python3_load_too(fake_cifar10, tmp_path):
    """Re-pickled with today's defaults (bytes opcodes, numpy._core): still only numpy names."""
    files, expected = fake_cifar10
    modern = {name: pickle.dumps(pickle.loads(raw, encoding="bytes"), protocol=4)
              for name, raw in files.items()}
    assert_loaded(load_cifar(write_folder(tmp_path, CIFAR10, modern), "test"),
                  expected["test"], "cifar-10 test")


def test_cifar100_layout(tmp_path):
    rng = np.random.default_rng(100)
    splits = {"train": random_split(rng, 9, 100), "test": random_split(rng, 5, 100)}
    splits["train"][1][0] = 99  # the largest fine label
    files = {name: official_batch(images, labels, b"fine_labels",
                                  {b"coarse_labels": (labels // 5).tolist()})
             for name, (images, labels) in splits.items()}
    folder = write_folder(tmp_path, CIFAR100, files)
    archive = write_archive(tmp_path / "cifar-100-python.tar.gz", CIFAR100, files)
    for source in (folder, archive):
        assert_loaded(load_cifar(source, "train"), splits["train"], "cifar-100 train")
        assert_loaded(load_cifar(source, "test"), splits["test"], "cifar-100 test")


# ---- the real files -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_dir():
    path = real_cifar10_dir()
    if path is None:
        pytest.skip("real CIFAR-10 not found ($CIFAR10_DIR or ../shared/data/cifar-10-batches-py)")
    return path


def test_real_cifar10_training_set(real_dir):
    images, labels, name = load_cifar(real_dir, "train")
    assert images.shape == (50000, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (50000,) and labels.dtype == np.int64 and name == "cifar-10 train"
    assert np.bincount(labels).tolist() == [5000] * 10  # CIFAR-10 is balanced
    rng = np.random.default_rng(0)
    for number in (1, 5):
        with open(real_dir / f"data_batch_{number}", "rb") as file:  # trusted: the real file
            batch = pickle.load(file, encoding="bytes")
        offset = (number - 1) * 10000
        np.testing.assert_array_equal(labels[offset:offset + 10000], batch[b"labels"])
        for row, y, x, channel in zip(*(rng.integers(0, n, 200) for n in (10000, 32, 32, 3))):
            # Manual decode: the row holds the R plane, then G, then B, each row-major.
            want = batch[b"data"][row, channel * 1024 + y * 32 + x]
            assert images[offset + row, y, x, channel] == want


def test_real_cifar10_test_split_from_a_tar(real_dir, tmp_path):
    images, labels, name = load_cifar(real_dir, "test")
    assert images.shape == (10000, 32, 32, 3) and name == "cifar-10 test"
    # Uncompressed, to keep it cheap: the reader handles both, as tarfile does.
    archive = tmp_path / "cifar-10-python.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(real_dir, arcname=CIFAR10)
    assert_loaded(load_cifar(archive, "test"), (images, labels), "cifar-10 test")


# ---- hostile and broken input -------------------------------------------------------------
class _Payload:
    """Unpickling this calls ``function(*args)``: what a malicious batch would do."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


PAYLOADS = {
    "os.system": lambda marker: _Payload(os.system, f"touch '{marker}'"),
    "subprocess": lambda marker: _Payload(subprocess.call, ["touch", str(marker)]),
    "exec": lambda marker: _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
}


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("as_archive", [False, True], ids=["folder", "tar.gz"])
def test_malicious_pickle_is_refused_unrun(fake_cifar10, tmp_path, payload, as_archive):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(PAYLOADS[payload](control), protocol=2))
    assert control.exists()  # the payload is live: plain pickle runs it

    marker = tmp_path / "marker"
    files = dict(fake_cifar10[0])
    files["data_batch_2"] = pickle.dumps({b"data": PAYLOADS[payload](marker),
                                          b"labels": [0]}, protocol=2)
    source = (write_archive(tmp_path / "cifar.tar.gz", CIFAR10, files) if as_archive
              else write_folder(tmp_path, CIFAR10, files))
    with pytest.raises(UnsafePickleError, match="refusing to load") as caught:
        load_cifar(source)
    assert isinstance(caught.value, DatasetError) and isinstance(caught.value, ValueError)
    assert not marker.exists()


_VALID = official_batch(*random_split(np.random.default_rng(1), 4, 10))


def _batch(data, labels=(1,)) -> bytes:
    return python2_pickle({b"data": data, b"labels": list(labels)})


MALFORMED = {
    "truncated": _VALID[:len(_VALID) // 2],
    "cut after a few bytes": _VALID[:5],
    "empty": b"",
    "not a pickle": b"this is not a pickle",
    "not a dict": python2_pickle([1, 2, 3]),
    "no data": python2_pickle({b"labels": [1]}),
    "no labels": python2_pickle({b"data": np.zeros((1, 3072), np.uint8)}),
    "float pixels": _batch(np.zeros((1, 3072), np.float32)),
    "short rows": _batch(np.zeros((1, 3000), np.uint8)),
    "flat data": _batch(np.zeros(3072, np.uint8)),
    "label count": _batch(np.zeros((2, 3072), np.uint8)),
    "label 10": _batch(np.zeros((1, 3072), np.uint8), [10]),
    "negative label": _batch(np.zeros((1, 3072), np.uint8), [-1]),
    "text labels": _batch(np.zeros((1, 3072), np.uint8), [b"cat"]),
}


@pytest.mark.parametrize("problem", sorted(MALFORMED))
def test_malformed_batch(fake_cifar10, tmp_path, problem):
    files = {**fake_cifar10[0], "data_batch_3": MALFORMED[problem]}
    with pytest.raises(DatasetError, match="data_batch_3") as caught:
        load_cifar(write_folder(tmp_path, CIFAR10, files))
    assert not isinstance(caught.value, UnsafePickleError)


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="no CIFAR data at .*nowhere"):
        load_cifar(tmp_path / "nowhere")


def test_folder_or_archive_without_every_batch(fake_cifar10, tmp_path):
    files = {name: raw for name, raw in fake_cifar10[0].items() if name != "test_batch"}
    with pytest.raises(DatasetError, match="holds neither CIFAR-10"):
        load_cifar(write_folder(tmp_path, CIFAR10, files))
    with pytest.raises(DatasetError, match="batches are missing"):
        load_cifar(write_archive(tmp_path / "cifar.tar.gz", CIFAR10, files))


def test_broken_archive(fake_cifar10, tmp_path):
    whole = write_archive(tmp_path / "cifar.tar.gz", CIFAR10, fake_cifar10[0]).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "noise.tar.gz").write_bytes(os.urandom(4096))
    for name in ("cut.tar.gz", "noise.tar.gz"):
        with pytest.raises(DatasetError, match=name):
            load_cifar(tmp_path / name)


def test_unknown_split(fake_cifar10, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_cifar(write_folder(tmp_path, CIFAR10, fake_cifar10[0]), "validation")
