"""The byte layout of one LMDB value: up to K images whose ids share ``id // K``.

    offset 0        b"IMC2"
    offset 4        n, uint32 little-endian: images in this chunk
    offset 8        header CRC-32 (zlib's) of bytes 12 to 16 + 20n (key CRC, labels,
                    checksums, slots), uint32 LE
    offset 12       CRC-32 of the value's LMDB key (id // K, 8 bytes big-endian), uint32 LE
    offset 16       labels, int64[n]
    offset 16 + 8n  checksums, uint64[n]: of each image with its slot and label
                    (``storage.core.checksums``, with the slot id % K as its id)
    offset 16 + 16n slots (id % K), uint32[n], ascending
    offset 16 + 20n pixels, uint8[n, H, W, C]

Packing many images per value fills LMDB's overflow pages instead of wasting
a quarter of a 4 KiB page per 3 KiB CIFAR image, and a range read walks
consecutive keys. LMDB checks nothing itself, so every read checks what it
returns: the header CRC covers what locates an image (a damaged slot or label
raises instead of sending a read elsewhere), each image's own checksum covers
its pixels, slot and label, and the key's CRC catches a value that turns up
under another key. A single read checks its own 3 KiB, not the whole value
(checking a 200 KiB value for one image made random reads 3.6x slower than
one pickled image per value); a batch checks its images in one matrix product.

Values written before (``b"IMGC"``: the same fields without the checksums, one
CRC-32 at offset 8 over every byte from 16 on, key CRC 0 in the oldest) still
read, checked whole; a write rewrites the values it touches in this layout.
"""
from __future__ import annotations

import functools
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from imagecodecs import zlibng_crc32  # same CRC-32 as zlib.crc32, far faster on large values

from storage.core.checksums import buffer_checksum, image_checksum, image_checksums
from storage.errors import CorruptStoreError

MAGIC = b"IMC2"
LEGACY_MAGIC = b"IMGC"
_HEADER = struct.Struct("<4sIII")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")


@dataclass
class Chunk:
    slots: np.ndarray   # uint32[n], ascending
    labels: np.ndarray  # int64[n]
    pixels: np.ndarray  # uint8[n, H, W, C]; in a parsed value, unchecked while ``checksums`` is set
    # uint64[n]: a parsed value's (still to check against the pixels), or a new chunk's own;
    # None where the whole value was checked (legacy values), or not computed yet
    checksums: np.ndarray | None = None
    where: str = ""

    @classmethod
    def parse(cls, value, image_shape, where: str, number: int) -> "Chunk":
        """Views into ``value``, stored under chunk ``number`` (no copy), its header checked.

        Slots and labels are checked; pixels by ``checked``, or by the caller against
        ``checksums`` once copied out (``verify_images``).
        """
        count, image_bytes = _check_size(value, image_shape, where)
        magic, _count, header_crc, key_crc = _HEADER.unpack_from(value)
        if magic == LEGACY_MAGIC:
            return _parse_legacy(value, image_shape, where, number, count, header_crc, key_crc)
        offset = _HEADER.size
        if zlib.crc32(memoryview(value)[12:offset + 20 * count]) != header_crc:
            raise CorruptStoreError(f"{where} fails its header's CRC-32 check; "
                                    "the store is damaged")
        _check_key(key_crc, number, where)
        labels = np.frombuffer(value, np.int64, count, offset)
        checksums = np.frombuffer(value, np.uint64, count, offset + 8 * count)
        slots = np.frombuffer(value, np.uint32, count, offset + 16 * count)
        pixels = np.frombuffer(value, np.uint8, count * image_bytes, offset + 20 * count)
        return cls(slots, labels, pixels.reshape(count, *image_shape), checksums, where)

    @staticmethod
    def count_in(value, image_shape, where: str) -> int:
        """The number of images a value holds, from its header, checked against its length."""
        count, _image_bytes = _check_size(value, image_shape, where)
        return count

    def checked(self, positions=None) -> np.ndarray:
        """``pixels``, once the images at ``positions`` (all when None) pass their checksums."""
        if self.checksums is not None:
            chosen = slice(None) if positions is None else np.asarray(positions)
            slots = self.slots[chosen].astype(np.int64)
            verify_images(slots, slots, self.labels[chosen], self.pixels[chosen],
                          self.checksums[chosen], self.where)
            if positions is None:
                self.checksums = None
        return self.pixels

    def to_bytes(self, number: int, reuse: bytearray | None = None) -> bytearray:
        """The value to store under chunk ``number``; the pixels must have been checked.

        ``reuse``: a value returned before, filled again when it has the size needed
        (LMDB copies what it is given): a batch's values then pass through one buffer
        in the CPU's cache, where a fresh one per value cost its zeroing and page faults.
        """
        count = len(self.slots)
        offset = _HEADER.size
        size = offset + count * 20 + self.pixels.nbytes
        # Every byte is written below, so a reused buffer keeps nothing of its last value.
        value = reuse if reuse is not None and len(reuse) == size else bytearray(size)
        np.frombuffer(value, "<i8", count, offset)[:] = self.labels
        np.frombuffer(value, "<u8", count, offset + 8 * count)[:] = (
            self.checksums if self.checksums is not None else image_checksums(
                self.slots.astype(np.int64), self.labels.astype(np.int64), self.pixels))
        np.frombuffer(value, "<u4", count, offset + 16 * count)[:] = self.slots
        pixels = np.frombuffer(value, np.uint8, self.pixels.nbytes, offset + 20 * count)
        pixels.reshape(self.pixels.shape)[:] = self.pixels
        _HEADER.pack_into(value, 0, MAGIC, count, 0, _key_checksum(number))
        _U32.pack_into(value, 8, zlib.crc32(memoryview(value)[12:offset + 20 * count]))
        return value

    def merged(self, other: "Chunk") -> "Chunk":
        """This chunk with ``other``'s images added; ``other`` wins where slots collide."""
        keep = ~np.isin(self.slots, other.slots)
        slots = np.concatenate([self.slots[keep], other.slots])
        order = np.argsort(slots, kind="stable")
        stored = self.checksums
        pixels = self.checked()  # damaged images are refused, not rewritten under new checks
        checksums = None
        if stored is not None and other.checksums is not None:
            checksums = np.concatenate([stored[keep], other.checksums])[order]
        return Chunk(slots[order],
                     np.concatenate([self.labels[keep], other.labels])[order],
                     np.concatenate([pixels[keep], other.pixels])[order], checksums)


def verify_images(ids, slots, labels, images, checksums, where) -> None:
    """CorruptStoreError naming the ``ids`` whose image (with its slot and label) fails
    its stored checksum."""
    differ = image_checksums(slots.astype(np.int64), labels, images) != checksums
    if differ.any():
        shown = ", ".join(str(int(key)) for key in ids[np.flatnonzero(differ)[:5]])
        raise CorruptStoreError(f"image(s) {shown} in {where} fail their checksum; "
                                "the store is damaged")


def read_image(value, image_shape, slot: int, where, number: int):
    """(a copy of the image in ``slot``, its label), or None when the chunk lacks it.

    Checks that image's bytes, slot and label and the value's key, not the whole value.
    ``where(number)`` names the value in errors.
    """
    if value[:4] == LEGACY_MAGIC:
        chunk = Chunk.parse(value, image_shape, where(number), number)
        position = int(np.searchsorted(chunk.slots, slot))
        if position >= len(chunk.slots) or chunk.slots[position] != slot:
            return None
        return chunk.pixels[position].copy(), int(chunk.labels[position])
    image_bytes = math.prod(image_shape)
    found = locate(value, image_shape, image_bytes, slot, where, number)
    if found is None:
        return None
    start, label, checksum = found
    # One copy, out of the memory map, into memory the caller owns; then its check.
    pixels = bytearray(memoryview(value)[start:start + image_bytes])
    image = np.frombuffer(pixels, np.uint8).reshape(image_shape)
    if (buffer_checksum(slot, label, pixels) if image_bytes % 8 == 0
            else image_checksum(slot, label, image)) != checksum:
        raise CorruptStoreError(f"the image in slot {slot} of {where(number)} fails its "
                                "checksum; the store is damaged")
    return image, label


def locate(value, image_shape, image_bytes: int, slot: int, where, number: int):
    """(offset of its pixels, label, stored checksum) of ``slot`` in a b"IMC2" value, or
    None when it lacks the slot; the caller checks the image against the checksum.
    ``where(number)`` names the value in errors (formatted only for them)."""
    magic, count, _header_crc, key_crc = _HEADER.unpack_from(value)
    if magic != MAGIC or len(value) != _HEADER.size + count * (20 + image_bytes):
        _check_size(value, image_shape, where(number), image_bytes)  # raises, naming it
    if key_crc != _key_checksum(number):
        _check_key(key_crc, number, where(number))
    slots_at = _HEADER.size + 16 * count
    # A full chunk holds slot s at position s; a sparse one is searched. The slots are not
    # checked yet: the image's checksum covers the slot it is found under.
    position = slot
    if slot >= count or _U32.unpack_from(value, slots_at + 4 * slot)[0] != slot:
        position = int(np.searchsorted(np.frombuffer(value, np.uint32, count, slots_at), slot))
        if position >= count or _U32.unpack_from(value, slots_at + 4 * position)[0] != slot:
            Chunk.parse(value, image_shape, where(number), number)  # damage is no "missing"
            return None
    label = _I64.unpack_from(value, _HEADER.size + 8 * position)[0]
    checksum = _U64.unpack_from(value, _HEADER.size + 8 * (count + position))[0]
    return slots_at + 4 * count + position * image_bytes, label, checksum


def _check_size(value, image_shape, where: str, image_bytes: int = 0) -> tuple[int, int]:
    """(images, bytes per image) of a value whose magic and length agree with its count."""
    if len(value) < _HEADER.size:
        raise CorruptStoreError(f"{where} is truncated ({len(value)} bytes)")
    magic, count = _HEADER.unpack_from(value)[:2]
    image_bytes = image_bytes or math.prod(image_shape)
    per_image = 20 if magic == MAGIC else 12 if magic == LEGACY_MAGIC else None
    if per_image is None or len(value) != _HEADER.size + count * (per_image + image_bytes):
        raise CorruptStoreError(
            f"{where} is not a chunk of {tuple(image_shape)} images "
            f"(magic {magic!r}, {len(value)} bytes for {count} images)")
    return count, image_bytes


def _parse_legacy(value, image_shape, where, number, count, checksum, key_crc) -> Chunk:
    """A value of the layout before per-image checksums: one CRC-32 over bytes 16 on."""
    if zlibng_crc32(memoryview(value)[_HEADER.size:]) != checksum:
        raise CorruptStoreError(f"{where} fails its CRC-32 check; the store is damaged")
    if key_crc != 0:  # the oldest values carry no key CRC
        _check_key(key_crc, number, where)
    offset = _HEADER.size
    labels = np.frombuffer(value, np.int64, count, offset)
    slots = np.frombuffer(value, np.uint32, count, offset + 8 * count)
    pixels = np.frombuffer(value, np.uint8, count * math.prod(image_shape), offset + 12 * count)
    return Chunk(slots, labels, pixels.reshape(count, *image_shape), None, where)


def _check_key(key_crc: int, number: int, where: str) -> None:
    if key_crc != _key_checksum(number):
        raise CorruptStoreError(f"{where} holds a value stored under another key; "
                                "the store is damaged")


@functools.lru_cache(maxsize=1 << 16)
def _key_checksum(number: int) -> int:
    """CRC-32 of chunk ``number``'s key, never 0 (0 marks legacy values that carry none)."""
    return zlib.crc32(number.to_bytes(8, "big")) or 1
