"""Encoded images kept back to back in one flat run of bytes, cut out again by their offsets.

HDF5's and Zarr's encoded layouts store every image's bytes in one flat array
with a start and a length per row; an Arrow ``large_binary`` column is the same
with offsets. Each image comes back as a ``bytes`` object of its own (one copy).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def slice_values(buffer, starts, lengths, base: int = 0) -> list[bytes]:
    """The bytes of each value ``starts[i]:starts[i] + lengths[i]``, out of ``buffer``,
    which holds the flat bytes from offset ``base`` on."""
    view = memoryview(buffer)
    return [bytes(view[start - base:start - base + length])
            for start, length in zip(np.asarray(starts).tolist(), np.asarray(lengths).tolist())]


def read_in_runs(read_bytes: Callable[[int, int], object], starts: np.ndarray,
                 lengths: np.ndarray, max_gap: int) -> list[bytes]:
    """The values at ``starts``/``lengths``, in the order given, with one
    ``read_bytes(low, high)`` (the flat bytes ``[low, high)``) per run of values that
    lie at most ``max_gap`` bytes apart: a sparse read skips what lies between, a
    dense one costs one call."""
    order = np.argsort(starts, kind="stable")
    starts, lengths = starts[order], lengths[order]
    reach = np.maximum.accumulate(starts + lengths)  # the end of every value so far
    breaks = np.flatnonzero(starts[1:] - reach[:-1] > max_gap) + 1
    datas: list[bytes] = [b""] * len(order)
    for run in np.split(np.arange(len(order)), breaks):
        low, high = int(starts[run[0]]), int(reach[run[-1]])
        values = slice_values(read_bytes(low, high), starts[run], lengths[run], low)
        for position, data in zip(order[run].tolist(), values):
            datas[position] = data
    return datas
