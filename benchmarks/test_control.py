"""The control: a read that uses none of the code under test, so it moves only with the machine.

The regression gate runs it in every round beside the benchmarks it judges; when
its time differs between base and head, the machine changed speed under the
measurement and the gate reports "inconclusive" instead of failing. It reads a
fixed ``.npy`` file of CIFAR-sized images with numpy alone (page cache, syscalls,
memory copies: what a store read costs without a storage format around it).
"""
from __future__ import annotations

import numpy as np
import pytest

CONTROL_COUNT = 10_000
CONTROL_SHAPE = (32, 32, 3)
CONTROL_ROUNDS = 20


@pytest.fixture(scope="module")
def control_file(tmp_path_factory):
    images = np.random.default_rng(0).integers(0, 256, (CONTROL_COUNT, *CONTROL_SHAPE),
                                               dtype=np.uint8)
    path = tmp_path_factory.mktemp("control") / "images.npy"
    np.save(path, images)
    return path, images.nbytes


@pytest.mark.parametrize("count", [CONTROL_COUNT], ids=lambda n: f"npy-N={n}")
def test_control(benchmark, control_file, count):
    """Read N images from one .npy file into memory (numpy only, no storage code)."""
    path, nbytes = control_file
    benchmark.group = f"control N={count}"
    benchmark.extra_info.update(operation="control", backend="npy", N=count,
                                image_shape=list(CONTROL_SHAPE))
    images = benchmark.pedantic(np.load, args=(path,), rounds=CONTROL_ROUNDS)
    assert images.shape == (count, *CONTROL_SHAPE) and images.nbytes == nbytes
