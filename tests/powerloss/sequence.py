"""What the writer writes: a plan of write_many and write_one calls, and each image by its id.

Pixels and labels follow from (seed, id) alone, so the process that checks a
crash state can tell right pixels from wrong ones without being told; so do the
bytes of an encoded image (the encoding's signature, then noise of a varying length).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from storage.core.encodings import SIGNATURES

IMAGE_SHAPE = (32, 32, 3)  # CIFAR's: a PNG in one block, 64 images per LMDB chunk or HDF5 chunk


@dataclass(frozen=True)
class Call:
    kind: str  # "many" or "one"
    ids: tuple[int, ...]

    def as_json(self) -> dict:
        return {"kind": self.kind, "ids": list(self.ids)}

    @classmethod
    def from_json(cls, data: dict) -> "Call":
        return cls(data["kind"], tuple(data["ids"]))


def make_plan(seed: int, calls: int) -> list[Call]:
    """``calls`` calls on fresh ids, about one in three a write_one, batches of 1-48."""
    chooser = random.Random(seed)
    plan, next_id = [], 0
    for _ in range(calls):
        if chooser.random() < 0.3:
            plan.append(Call("one", (next_id,)))
            next_id += 1
        else:
            count = chooser.randint(1, 48)
            plan.append(Call("many", tuple(range(next_id, next_id + count))))
            next_id += count
    return plan


def image_for(seed: int, key: int, encoding: str | None = None) -> np.ndarray | bytes:
    rng = np.random.default_rng([seed, key])
    if encoding is None:
        return rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
    return SIGNATURES[encoding] + rng.bytes(int(rng.integers(0, 6000)))  # a CIFAR JPEG's size


def label_for(seed: int, key: int) -> int:
    return (key * 7919 + seed) % 1000


def batch_for(seed: int, ids, encoding: str | None = None):
    """(images, labels): an array of images, or with ``encoding`` a list of bytes."""
    images = [image_for(seed, key, encoding) for key in ids]
    labels = np.array([label_for(seed, key) for key in ids], dtype=np.int64)
    return (images if encoding else np.stack(images)), labels
