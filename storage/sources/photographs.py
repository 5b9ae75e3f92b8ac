"""Real photographs at any size, with no download: crops of the photographs scikit-image ships.

``photograph_crops(count, side)`` cuts ``count`` square crops from the colour
photographs in scikit-image's ``skimage/data`` folder (astronaut, coffee,
rocket, Hubble deep field, ...), each at a seeded position and scale, flipped
at random, and resized to ``side`` x ``side`` with Pillow's bicubic filter.
The same arguments always give the same images, so runs are comparable; only
the files are read, nothing of scikit-image is imported.
"""
from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from storage.errors import DatasetError

# The colour photographs among skimage/data (the rest are greyscale or drawings).
PHOTOGRAPHS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
               "hubble_deep_field.jpg", "motorcycle_left.png", "motorcycle_right.png",
               "retina.jpg", "ihc.png", "color.png")
CLASSES = len(PHOTOGRAPHS)  # a crop's label is the photograph it came from
_SMALLEST_CROP = 0.5  # crops span 50-100 % of a photograph's shorter side


def photograph_crops(count: int, side: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` crops (N, side, side, 3) uint8, and labels: the index of the source photograph."""
    if not isinstance(side, int) or side < 8:
        raise DatasetError(f"side must be an integer of at least 8 pixels, got {side!r}")
    photos = _photographs()
    rng = np.random.default_rng([seed, side])
    labels = rng.integers(0, len(photos), count).astype(np.int64)
    images = np.empty((count, side, side, 3), np.uint8)
    for row, label in enumerate(labels):
        photo = photos[label]
        height, width = photo.shape[:2]
        crop = int(min(height, width) * rng.uniform(_SMALLEST_CROP, 1.0))
        top, left = rng.integers(0, height - crop + 1), rng.integers(0, width - crop + 1)
        patch = Image.fromarray(photo[top:top + crop, left:left + crop])
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images[row] = np.asarray(patch.resize((side, side), Image.Resampling.BICUBIC))
    return images, labels


@cache
def _photographs() -> tuple[np.ndarray, ...]:
    folder = photographs_folder()
    photos = []
    for name in PHOTOGRAPHS:
        with Image.open(folder / name) as image:
            photos.append(np.asarray(image.convert("RGB")))
    return tuple(photos)


def photographs_folder() -> Path:
    """The folder holding scikit-image's sample photographs."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the photographs come from scikit-image's sample data; "
                           "pip install -r requirements.txt installs it")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    missing = [name for name in PHOTOGRAPHS if not (folder / name).is_file()]
    if missing:
        raise DatasetError(f"scikit-image's sample data in '{folder}' lacks {missing}; "
                           "reinstall scikit-image (pip install -r requirements.txt)")
    return folder
