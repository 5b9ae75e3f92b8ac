"""The byte layout of one LMDB value: up to K images whose ids share ``id // K``.

    offset 0        b"IMGC"
    offset 4        n, uint32 little-endian: images in this chunk
    offset 8        labels, int64[n]
    offset 8 + 8n   CRC-32 of each image's pixels, uint32[n]
    offset 8 + 12n  slots (id % K), uint32[n], ascending
    offset 8 + 16n  pixels, uint8[n, H, W, C]

Packing many images per value fills LMDB's overflow pages instead of wasting
a quarter of a 4 KiB page per 3 KiB CIFAR image, and a range read walks
consecutive keys. The CRCs let a reader tell damaged pixels from good ones:
LMDB itself checks nothing.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from storage.errors import CorruptStoreError

MAGIC = b"IMGC"
_HEADER = struct.Struct("<4sI")


@dataclass
class Chunk:
    slots: np.ndarray   # uint32[n], ascending
    labels: np.ndarray  # int64[n]
    crcs: np.ndarray    # uint32[n]
    pixels: np.ndarray  # uint8[n, H, W, C]

    @classmethod
    def parse(cls, value, image_shape, where: str) -> "Chunk":
        """Views into ``value`` (no copy); checks the layout, not the pixels."""
        if len(value) < _HEADER.size:
            raise CorruptStoreError(f"{where} is truncated ({len(value)} bytes)")
        magic, count = _HEADER.unpack_from(value)
        image_bytes = int(np.prod(image_shape))
        if magic != MAGIC or len(value) != _HEADER.size + count * (16 + image_bytes):
            raise CorruptStoreError(
                f"{where} is not a chunk of {tuple(image_shape)} images "
                f"(magic {magic!r}, {len(value)} bytes for {count} images)")
        offset = _HEADER.size
        labels = np.frombuffer(value, np.int64, count, offset)
        crcs = np.frombuffer(value, np.uint32, count, offset + 8 * count)
        slots = np.frombuffer(value, np.uint32, count, offset + 12 * count)
        pixels = np.frombuffer(value, np.uint8, count * image_bytes, offset + 16 * count)
        if count > 1 and np.any(np.diff(slots.astype(np.int64)) <= 0):
            raise CorruptStoreError(f"{where} has slots out of order")
        return cls(slots, labels, crcs, pixels.reshape(count, *image_shape))

    @classmethod
    def build(cls, slots, labels, pixels) -> "Chunk":
        crcs = np.fromiter((zlib.crc32(image) for image in pixels), np.uint32, len(pixels))
        return cls(slots.astype(np.uint32), labels, crcs, pixels)

    def to_bytes(self) -> bytes:
        return b"".join((_HEADER.pack(MAGIC, len(self.slots)), self.labels.tobytes(),
                         self.crcs.tobytes(), self.slots.tobytes(), self.pixels.tobytes()))

    def merged(self, other: "Chunk") -> "Chunk":
        """This chunk with ``other``'s images added; ``other`` wins where slots collide."""
        keep = ~np.isin(self.slots, other.slots)
        slots = np.concatenate([self.slots[keep], other.slots])
        order = np.argsort(slots, kind="stable")
        return Chunk(slots[order],
                     np.concatenate([self.labels[keep], other.labels])[order],
                     np.concatenate([self.crcs[keep], other.crcs])[order],
                     np.concatenate([self.pixels[keep], other.pixels])[order])

    def verify(self, positions, where: str) -> None:
        for position in positions:
            if zlib.crc32(self.pixels[position]) != self.crcs[position]:
                raise CorruptStoreError(
                    f"image in slot {int(self.slots[position])} of {where} fails its "
                    "checksum; the store is damaged")
