"""The byte layout of one LMDB value: up to K images whose ids share ``id // K``.

    offset 0        b"IMGC"
    offset 4        n, uint32 little-endian: images in this chunk
    offset 8        CRC-32 (zlib's) of every byte from offset 16 on, uint32 LE
    offset 12       CRC-32 of the value's LMDB key (id // K, 8 bytes big-endian), uint32 LE
                    (0 in values written before it was checked)
    offset 16       labels, int64[n]
    offset 16 + 8n  slots (id % K), uint32[n], ascending
    offset 16 + 12n pixels, uint8[n, H, W, C]

Packing many images per value fills LMDB's overflow pages instead of wasting
a quarter of a 4 KiB page per 3 KiB CIFAR image, and a range read walks
consecutive keys. LMDB checks nothing itself, so every read verifies the CRC,
which covers each image and label in the value, and the key's CRC: damaged
bytes raise CorruptStoreError instead of coming back as wrong pixels, or as the
right pixels under the ids of a damaged key. (zlib-ng computes it at tens of
GB/s, so checking a whole value to read one image costs microseconds.)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from imagecodecs import zlibng_crc32 as crc32  # same CRC-32 as zlib.crc32, far faster

from storage.errors import CorruptStoreError

MAGIC = b"IMGC"
_HEADER = struct.Struct("<4sIII")


@dataclass
class Chunk:
    slots: np.ndarray   # uint32[n], ascending
    labels: np.ndarray  # int64[n]
    pixels: np.ndarray  # uint8[n, H, W, C]

    @classmethod
    def parse(cls, value, image_shape, where: str, number: int) -> "Chunk":
        """Views into ``value``, stored under chunk ``number`` (no copy), once checked."""
        if len(value) < _HEADER.size:
            raise CorruptStoreError(f"{where} is truncated ({len(value)} bytes)")
        magic, count, checksum, key_checksum = _HEADER.unpack_from(value)
        image_bytes = int(np.prod(image_shape))
        if magic != MAGIC or len(value) != _HEADER.size + count * (12 + image_bytes):
            raise CorruptStoreError(
                f"{where} is not a chunk of {tuple(image_shape)} images "
                f"(magic {magic!r}, {len(value)} bytes for {count} images)")
        if crc32(memoryview(value)[_HEADER.size:]) != checksum:
            raise CorruptStoreError(f"{where} fails its CRC-32 check; the store is damaged")
        if key_checksum not in (0, _key_checksum(number)):
            raise CorruptStoreError(f"{where} holds a value stored under another key; "
                                    "the store is damaged")
        offset = _HEADER.size
        labels = np.frombuffer(value, np.int64, count, offset)
        slots = np.frombuffer(value, np.uint32, count, offset + 8 * count)
        pixels = np.frombuffer(value, np.uint8, count * image_bytes, offset + 12 * count)
        return cls(slots, labels, pixels.reshape(count, *image_shape))

    @staticmethod
    def count_in(value, image_shape, where: str) -> int:
        """The number of images a value holds, from its header, checked against its length."""
        if len(value) < _HEADER.size:
            raise CorruptStoreError(f"{where} is truncated ({len(value)} bytes)")
        magic, count, _checksum, _key_checksum = _HEADER.unpack_from(value)
        if magic != MAGIC or len(value) != _HEADER.size + count * (12 + int(np.prod(image_shape))):
            raise CorruptStoreError(f"{where} is not a chunk of {tuple(image_shape)} images")
        return count

    def to_bytes(self, number: int) -> bytearray:
        """The value to store under chunk ``number``."""
        count = len(self.slots)
        value = bytearray(_HEADER.size + count * 12 + self.pixels.nbytes)
        # Fill one buffer in place: values are up to 256 KiB and copies add up.
        np.frombuffer(value, "<i8", count, _HEADER.size)[:] = self.labels
        np.frombuffer(value, "<u4", count, _HEADER.size + 8 * count)[:] = self.slots
        pixels = np.frombuffer(value, np.uint8, self.pixels.nbytes, _HEADER.size + 12 * count)
        pixels.reshape(self.pixels.shape)[:] = self.pixels
        checksum = crc32(memoryview(value)[_HEADER.size:])
        _HEADER.pack_into(value, 0, MAGIC, count, checksum, _key_checksum(number))
        return value

    def merged(self, other: "Chunk") -> "Chunk":
        """This chunk with ``other``'s images added; ``other`` wins where slots collide."""
        keep = ~np.isin(self.slots, other.slots)
        slots = np.concatenate([self.slots[keep], other.slots])
        order = np.argsort(slots, kind="stable")
        return Chunk(slots[order],
                     np.concatenate([self.labels[keep], other.labels])[order],
                     np.concatenate([self.pixels[keep], other.pixels])[order])


def _key_checksum(number: int) -> int:
    """CRC-32 of chunk ``number``'s key, never 0 (0 marks values that carry none)."""
    return crc32(number.to_bytes(8, "big")) or 1
