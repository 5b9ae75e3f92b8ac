"""CIFAR batches from strangers: refused without running anything, or a clear DatasetError.

tests/test_cifar.py refuses the obvious payloads (os.system, subprocess, exec) and
a list of malformed batches. Here: other ways a pickle names or reaches a
callable, payloads hidden deep inside a batch, allowed numpy globals called with
hostile arguments, and hypothesis damaging the bytes of a valid batch anywhere.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.sources.cifar import load_cifar
from storage.errors import DatasetError, UnsafePickleError
from tests.strategies import examples

pytestmark = pytest.mark.timeout(120)
FOLDER = "cifar-10-batches-py"
NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def batch(count: int = 3, seed: int = 0) -> bytes:
    """A valid batch, pickled by Python 3 (protocol 3: bytes need no _codecs global)."""
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, count).tolist(),
                         b"batch_label": b"test"}, protocol=3)


def cifar_folder(root: Path, first_batch: bytes) -> Path:
    folder = root / FOLDER
    folder.mkdir(parents=True)
    for number, name in enumerate(NAMES):
        (folder / name).write_bytes(first_batch if number == 0 else batch(seed=number))
    return folder


def opcode_pickle(marker: Path, how: str) -> bytes:
    """Pickles that would create ``marker`` if a loader ran them, each named a different way."""
    command = f"touch {marker}".encode()
    code = f"open({str(marker)!r}, 'w').close()".encode()
    return {
        # protocol 0: GLOBAL then REDUCE
        "GLOBAL posix.system": b"cposix\nsystem\n(V" + command + b"\ntR.",
        "GLOBAL builtins.eval": b"cbuiltins\neval\n(V" + code + b"\ntR.",
        "GLOBAL builtins.exec": b"c__builtin__\nexec\n(V" + code + b"\ntR.",
        # INST calls the class (here a function) with the marked arguments
        "INST os.system": b"(V" + command + b"\nios\nsystem\n.",
        # STACK_GLOBAL (protocol 4) names the global with two strings on the stack
        "STACK_GLOBAL os.system": (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x8c"
                                   + bytes([len(command)]) + command + b"\x85R."),
        # a global reached through an allowed-looking module
        "numpy.load": b"cnumpy\nload\n(V" + str(marker).encode() + b"\ntR.",
        "copyreg._reconstructor": b"ccopyreg\n_reconstructor\n(cos\nsystem\n(V"
                                  + command + b"\ntRtR.",
        "getattr chain": b"cbuiltins\ngetattr\n(cos\nsystem\nV__call__\ntR(V" + command + b"\ntR.",
    }[how]


class _Reduce:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


HOW = ["GLOBAL posix.system", "GLOBAL builtins.eval", "GLOBAL builtins.exec", "INST os.system",
       "STACK_GLOBAL os.system", "numpy.load", "copyreg._reconstructor", "getattr chain"]


@pytest.mark.parametrize("how", HOW)
def test_every_way_to_name_a_callable_is_refused(tmp_path, how):
    if how != "numpy.load":  # the payload is live: plain pickle runs it
        control = tmp_path / "control"
        try:
            pickle.loads(opcode_pickle(control, how))
        except Exception:
            pass  # what the payload returned may not unpickle further; it ran
        assert control.exists()
    marker = tmp_path / "ran"
    hostile = opcode_pickle(marker, how)
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        load_cifar(cifar_folder(tmp_path, hostile))
    assert not marker.exists()


def test_payload_deep_inside_a_batch(tmp_path):
    """A payload among the labels, or in a key the loader never reads, is refused too."""
    import os
    marker = tmp_path / "ran"
    payload = _Reduce(os.system, f"touch {marker}")
    for content in ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0, [1, {2: payload}]]},
                    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0],
                     b"filenames": [payload]}):
        folder = tmp_path / f"case-{len(content)}"
        with pytest.raises(UnsafePickleError):
            load_cifar(cifar_folder(folder, pickle.dumps(content, protocol=2)))
    assert not marker.exists()


def reconstruct_pickle(shape, dtype: bytes) -> bytes:
    """numpy's own (allowed) _reconstruct asked for an array of ``shape``: no data follows."""
    return (b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01"
            + pickle.dumps(shape, protocol=2)[2:-1] + b"C\x01" + dtype + b"\x87R.")


@pytest.mark.parametrize("shape", [(2**62,), (2**31, 2**31), (-1,)], ids=str)
def test_allowed_globals_with_hostile_arguments(tmp_path, shape):
    """Allowed names asked for absurd arrays give a DatasetError, not a MemoryError or a crash."""
    with pytest.raises(DatasetError):
        load_cifar(cifar_folder(tmp_path, reconstruct_pickle(shape, b"b")))


@st.composite
def damaged(draw, valid: bytes) -> bytes:
    content = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, len(content)))
        if kind == "flip" and at < len(content):
            content[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del content[at:]
        elif kind == "insert":
            content[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del content[at:at + draw(st.integers(1, 16))]
    return bytes(content)


VALID = batch(count=2, seed=9)


@settings(max_examples=examples(150), derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=damaged(VALID))
def test_damaged_batches_load_right_or_raise_a_dataset_error(tmp_path_factory, content):
    folder = cifar_folder(tmp_path_factory.mktemp("cifar"), content)
    try:
        images, labels, _ = load_cifar(folder)
    except DatasetError:
        return
    # Damage that kept the pickle valid can only have changed the values, never the layout.
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert ((0 <= labels) & (labels < 10)).all()


def test_a_valid_folder_loads(tmp_path):
    images, labels, name = load_cifar(cifar_folder(tmp_path, batch()))
    assert images.shape == (15, 32, 32, 3) and name == "cifar-10 train"
    expected = pickle.loads(batch())[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(images[:3], expected)
