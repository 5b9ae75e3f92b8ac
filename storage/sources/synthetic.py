"""A built-in, seeded stand-in for CIFAR-10 that compresses like photographs.

Uniform noise would make PNG files far larger than real photos and flatter
every codec's numbers. These images are smooth colour fields at several
scales (sky, walls, shading) plus fine sensor-like noise, calibrated so that
their mean PNG size is within a few per cent of real CIFAR-10's.
"""
from __future__ import annotations

import numpy as np

SIDE = 32
CLASSES = 10
_BATCH = 5000  # images generated at a time, to bound float32 temporaries
# (grid side, standard deviation) of the luminance fields, coarse to fine.
_LUMINANCE_SCALES = ((3, 50.0), (6, 25.0), (12, 12.0))
_CHROMA_SIGMA = 20.0
_NOISE_SIGMA = 6.0  # calibrated: sets the PNG size (see tests/test_datasets.py)


def synthetic_cifar(count: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (N, 32, 32, 3) uint8 and labels in 0..9.

    The same seed gives the same images, and a smaller ``count`` a prefix of them.
    """
    images = np.empty((count, SIDE, SIDE, 3), np.uint8)
    labels = np.empty(count, np.int64)
    for start in range(0, count, _BATCH):
        stop = min(start + _BATCH, count)
        rng = np.random.default_rng([seed, start // _BATCH])
        images[start:stop] = _photographs(rng, _BATCH)[:stop - start]
        labels[start:stop] = rng.integers(0, CLASSES, _BATCH)[:stop - start]
    return images, labels


def _photographs(rng: np.random.Generator, count: int) -> np.ndarray:
    def field(grid: int, sigma: float, channels: int) -> np.ndarray:
        return _upsample(rng.standard_normal((count, grid, grid, channels), np.float32) * sigma)

    image = np.empty((count, SIDE, SIDE, 3), np.float32)
    image[:] = rng.uniform(60, 190, (count, 1, 1, 3))
    for grid, sigma in _LUMINANCE_SCALES:
        image += field(grid, sigma, 1)
    image += field(3, _CHROMA_SIGMA, 3)
    image += rng.standard_normal((count, SIDE, SIDE, 1), np.float32) * _NOISE_SIGMA
    image += rng.standard_normal((count, SIDE, SIDE, 3), np.float32) * (_NOISE_SIGMA / 3)
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _upsample(grid: np.ndarray) -> np.ndarray:
    """Bilinear resize of (N, g, g, C) to (N, 32, 32, C), as two matrix products."""
    weights = _interpolation_matrix(grid.shape[1])
    planes = np.moveaxis(grid, 3, 1)  # (N, C, g, g)
    return np.moveaxis(weights @ planes @ weights.T, 1, 3)


def _interpolation_matrix(side: int) -> np.ndarray:
    """(32, side) weights that linearly interpolate ``side`` samples onto 32 pixels."""
    position = np.linspace(0, side - 1, SIDE)
    low = np.minimum(np.floor(position).astype(np.intp), side - 1)
    high = np.minimum(low + 1, side - 1)
    weights = np.zeros((SIDE, side), np.float32)
    np.add.at(weights, (np.arange(SIDE), low), 1 - (position - low))
    np.add.at(weights, (np.arange(SIDE), high), position - low)
    return weights
