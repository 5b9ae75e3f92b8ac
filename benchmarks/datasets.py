"""The images the benchmarks store: real CIFAR when given, else the built-in stand-in.

At sides other than CIFAR's 32 px the suite stores generated images of that side,
or with ``photographs`` crops of real photographs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from storage.encode import JPEG_QUALITY, encode_images
from storage.sources.cifar import load_cifar
from storage.sources.photographs import photograph_crops
from storage.sources.synthetic import SIDE, synthetic_cifar, synthetic_images

CIFAR_ENV = "CIFAR10_DIR"
TRAINING_IMAGES = 50_000  # CIFAR-10's training split; larger N reuses it, as the classic runs do


@dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``count`` images and labels, repeating the data set when it is shorter."""
        if count <= len(self.images):
            return self.images[:count], self.labels[:count]
        rows = np.arange(count) % len(self.images)
        return self.images[rows], self.labels[rows]


@dataclass(frozen=True)
class EncodedDataset:
    name: str
    side: int
    datas: list  # JPEG bytes, one per image
    labels: np.ndarray

    def take(self, count: int) -> tuple[list, np.ndarray]:
        """The first ``count`` images' bytes and labels, repeating the set when it is shorter."""
        rows = np.arange(count) % len(self.datas)
        return [self.datas[row] for row in rows.tolist()], self.labels[rows]


def encode_jpeg(dataset: Dataset, count: int) -> EncodedDataset:
    """The first ``count`` images of ``dataset`` as JPEG quality 90 (libjpeg-turbo: the
    same bytes every run), encoded on every core."""
    images, labels = dataset.images[:count], dataset.labels[:count]
    datas = encode_images(images, "jpeg")
    side = int(images.shape[1])
    return EncodedDataset(f"JPEG q{JPEG_QUALITY} of {dataset.name}", side, datas, labels)


def load_dataset(cifar_path: str | None = None, *, count: int = TRAINING_IMAGES,
                 side: int = SIDE, photographs: bool = False) -> Dataset:
    """CIFAR-10's training images from ``cifar_path`` or $CIFAR10_DIR, else generated ones.

    ``count`` bounds how many generated images to make (real data is loaded whole).
    At other sides than 32 px: ``count`` generated images, or photograph crops.
    """
    if side != SIDE:
        made = min(count, TRAINING_IMAGES)
        if photographs:
            images, labels = photograph_crops(made, side)
            return Dataset(f"photograph crops {side}px (seed 0)", images, labels)
        images, labels = synthetic_images(made, side)
        return Dataset(f"synthetic {side}px (seed 0)", images, labels)
    cifar_path = cifar_path or os.environ.get(CIFAR_ENV)
    if cifar_path:
        images, labels, name = load_cifar(cifar_path, "train")
        return Dataset(name, images, labels)
    images, labels = synthetic_cifar(min(count, TRAINING_IMAGES))
    return Dataset("synthetic-cifar (seed 0)", images, labels)
