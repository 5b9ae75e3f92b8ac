"""A built-in, seeded stand-in for photographs that compresses like them, at any size.

Uniform noise would make PNG files far larger than real photos and flatter
every codec's numbers. These images are smooth colour fields at several
scales (sky, walls, shading) plus fine sensor-like noise. At 32 px the noise is
calibrated so that their mean PNG size is within a few per cent of real
CIFAR-10's; at 256 and 512 px so that their mean PNG and JPEG sizes are within
25 % of real photographs' (``storage.sources.photographs``; tests/test_datasets.py
checks both).
"""
from __future__ import annotations

import numpy as np

SIDE = 32
CLASSES = 10
_BATCH_PIXELS = 5000 * SIDE * SIDE  # pixels generated at a time, to bound float32 temporaries
# (grid side, standard deviation) of the luminance fields, coarse to fine; larger
# images get the finer ones too, up to a grid of half their side.
_LUMINANCE_SCALES = ((3, 50.0), (6, 25.0), (12, 12.0), (24, 6.0), (48, 3.0), (96, 1.5))
_CHROMA_SIGMA = 20.0
# Calibrated noise per side (see tests/test_datasets.py): it sets the PNG and JPEG sizes.
# Other sides interpolate in log2(side).
_NOISE_SIGMA = {32: 6.0, 256: 4.5, 512: 3.2}


def synthetic_cifar(count: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (N, 32, 32, 3) uint8 and labels in 0..9, like CIFAR-10's."""
    return synthetic_images(count, SIDE, seed)


def synthetic_images(count: int, side: int = SIDE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (N, side, side, 3) uint8 and labels in 0..9.

    The same seed gives the same images, and a smaller ``count`` a prefix of them.
    """
    batch = max(1, _BATCH_PIXELS // (side * side))
    images = np.empty((count, side, side, 3), np.uint8)
    labels = np.empty(count, np.int64)
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        # At 32 px the seeds are those of the first release, so its images stay the same.
        rng = np.random.default_rng([seed, start // batch] if side == SIDE
                                    else [seed, start // batch, side])
        images[start:stop] = _photographs(rng, batch, side)[:stop - start]
        labels[start:stop] = rng.integers(0, CLASSES, batch)[:stop - start]
    return images, labels


def noise_sigma(side: int) -> float:
    sides = sorted(_NOISE_SIGMA)
    return float(np.interp(np.log2(side), np.log2(sides), [_NOISE_SIGMA[s] for s in sides]))


def _photographs(rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    def field(grid: int, sigma: float, channels: int) -> np.ndarray:
        return _upsample(rng.standard_normal((count, grid, grid, channels), np.float32) * sigma,
                         side)

    noise = noise_sigma(side)
    image = np.empty((count, side, side, 3), np.float32)
    image[:] = rng.uniform(60, 190, (count, 1, 1, 3))
    for grid, sigma in _LUMINANCE_SCALES:
        if grid == 3 or 2 * grid <= side:
            image += field(grid, sigma, 1)
    image += field(3, _CHROMA_SIGMA, 3)
    image += rng.standard_normal((count, side, side, 1), np.float32) * noise
    image += rng.standard_normal((count, side, side, 3), np.float32) * (noise / 3)
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _upsample(grid: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of (N, g, g, C) to (N, side, side, C), as two matrix products."""
    weights = _interpolation_matrix(grid.shape[1], side)
    planes = np.moveaxis(grid, 3, 1)  # (N, C, g, g)
    return np.moveaxis(weights @ planes @ weights.T, 1, 3)


def _interpolation_matrix(grid: int, side: int) -> np.ndarray:
    """(side, grid) weights that linearly interpolate ``grid`` samples onto ``side`` pixels."""
    position = np.linspace(0, grid - 1, side)
    low = np.minimum(np.floor(position).astype(np.intp), grid - 1)
    high = np.minimum(low + 1, grid - 1)
    weights = np.zeros((side, grid), np.float32)
    np.add.at(weights, (np.arange(side), low), 1 - (position - low))
    np.add.at(weights, (np.arange(side), high), position - low)
    return weights
