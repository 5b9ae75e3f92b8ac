"""Per-image checksums for formats that check nothing themselves: one uint64 per image.

    checksum = C + id * w[0] + label * w[1] + sum(word[j] * w[j + 2])   (mod 2**64)

where ``word`` is the image's bytes read as little-endian uint64 (zero-padded to
a multiple of 8 bytes), ``w[k] = splitmix64(k) | 1`` and ``C = splitmix64(2**32)``.
Odd weights make any change to one word show; a different weight per position
makes moved words show; the id and label terms catch a damaged label and an image
that turns up under another id; ``C`` keeps an all-zero row (a lost block) from
passing. It is one matrix product per batch, about 0.2 us per CIFAR image, where
CRC-32 called from Python per image costs 1.3 us.
"""
from __future__ import annotations

import functools

import numpy as np
from imagecodecs import zlibng_crc32 as crc32  # same CRC-32 as zlib.crc32, far faster

from storage.errors import CorruptStoreError

_MASK = 2**64 - 1

def image_checksums(ids: np.ndarray, labels: np.ndarray, images: np.ndarray) -> np.ndarray:
    """uint64 checksum of each image (N, H, W, C) with its id and label (int64 arrays)."""
    count = len(images)
    flat = images.reshape(count, -1)
    if flat.shape[1] % 8:
        padded = np.zeros((count, -(-flat.shape[1] // 8) * 8), np.uint8)
        padded[:, :flat.shape[1]] = flat
        flat = padded
    words = np.ascontiguousarray(flat).view("<u8")
    weights = _weights(words.shape[1] + 2)
    # uint64 arrays wrap around silently: the sum is taken mod 2**64, as defined.
    return (np.einsum("ij,j->i", words, weights[2:]) + _OFFSET
            + ids.view(np.uint64) * weights[0] + labels.view(np.uint64) * weights[1])


def image_checksum(key: int, label: int, image: np.ndarray) -> int:
    """``image_checksums`` of one image (H, W, C), with a third of the overhead."""
    words = image.reshape(-1)
    if words.size % 8 or not words.flags.c_contiguous:
        return int(image_checksums(np.array([key], np.int64), np.array([label], np.int64),
                                   image[None])[0])
    pixel_weights, key_weight, label_weight = _single_weights(words.size // 8)
    # vdot: a third less overhead than @ on one image (integer products wrap the same way)
    return (int(np.vdot(words.view("<u8"), pixel_weights)) + _OFFSET_INT
            + (key & _MASK) * key_weight + (label & _MASK) * label_weight) & _MASK


def buffer_checksum(key: int, label: int, buffer) -> int:
    """``image_checksum`` of an image's bytes in ``buffer`` (a length divisible by 8)."""
    words = np.frombuffer(buffer, "<u8")
    pixel_weights, key_weight, label_weight = _single_weights(len(words))
    return (int(np.vdot(words, pixel_weights)) + _OFFSET_INT
            + (key & _MASK) * key_weight + (label & _MASK) * label_weight) & _MASK


def verify_checksums(ids, labels, images, stored: np.ndarray, where: str) -> None:
    """Raise CorruptStoreError naming the ids whose image, label or id fail their checksum."""
    raise_on_failed_checksums(ids, image_checksums(ids, labels, images) != stored, where)


def raise_on_failed_checksums(ids: np.ndarray, failed: np.ndarray, where: str) -> None:
    """CorruptStoreError naming the ids whose checksum ``failed`` (a bool array), if any."""
    if failed.any():
        shown = ", ".join(str(int(key)) for key in ids[failed][:5])
        raise CorruptStoreError(
            f"image(s) {shown} in {where} fail their checksum; the store is damaged "
            "(restore it from a copy, or rewrite those images with overwrite=True)")


class PendingChecks:
    """Images already copied into ``images`` whose checksums are still to verify.

    A reader adds the rows it fills; they are verified together, in one matrix product,
    once ``limit`` rows wait (while they are still in the CPU's cache) and at ``verify()``,
    which the caller runs before it hands the images out. A sharded store reading 16 ids
    from each of 16 shards so pays for one product, not 16.
    """

    def __init__(self, images: np.ndarray, limit: int):
        self.images, self.limit = images, limit
        self._parts: list[tuple] = []  # (rows, ids, slots, labels, checksums, where)
        self._waiting = 0

    def add(self, rows, ids, slots, labels, checksums, where: str) -> None:
        """``images[rows]`` hold ``ids`` (int arrays), stored with ``checksums`` computed
        over each image with its slot (the id the checksum was computed with) and label;
        ``where`` names their store in errors."""
        if len(ids):
            self._parts.append((rows, ids, slots, labels, checksums, where))
            self._waiting += len(ids)
            if self._waiting >= self.limit:
                self.verify()

    def verify(self) -> None:
        """CorruptStoreError naming the ids whose image, slot or label fail their checksum."""
        parts, self._parts, self._waiting = self._parts, [], 0
        if not parts:
            return
        rows, _ids, slots, labels, stored, _where = (
            parts[0] if len(parts) == 1 else
            [np.concatenate([part[field] for part in parts]) for field in range(5)] + [""])
        if np.any(rows[1:] < rows[:-1]):  # rows in order: the images may be one slice
            order = np.argsort(rows, kind="stable")
            rows, slots, labels, stored = rows[order], slots[order], labels[order], stored[order]
        first, last = int(rows[0]), int(rows[-1])
        images = (self.images[first:last + 1] if last - first + 1 == len(rows)
                  else self.images[rows])
        if np.array_equal(image_checksums(slots.astype(np.int64, copy=False), labels, images),
                          stored):
            return
        for rows, ids, slots, labels, stored, where in parts:  # name the ids, and their store
            bad = image_checksums(slots.astype(np.int64, copy=False), labels,
                                  self.images[rows]) != stored
            if bad.any():
                shown = ", ".join(str(int(key)) for key in ids[np.flatnonzero(bad)[:5]])
                raise CorruptStoreError(f"image(s) {shown} in {where} fail their checksum; "
                                        "the store is damaged")


def _splitmix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@functools.cache
def _weights(count: int) -> np.ndarray:
    return _splitmix64(np.arange(count, dtype=np.uint64)) | np.uint64(1)


@functools.cache
def _single_weights(words: int) -> tuple[np.ndarray, int, int]:
    weights = _weights(words + 2)
    return weights[2:].copy(), int(weights[0]), int(weights[1])


_OFFSET = _splitmix64(np.array([2**32], np.uint64))[0]
_OFFSET_INT = int(_OFFSET)


def bytes_checksums(ids: np.ndarray, labels: np.ndarray, datas) -> np.ndarray:
    """uint64 checksum of each encoded image: CRC-32 of its id and label (8 bytes each,
    little-endian) followed by its bytes. zlib-ng's CRC runs at tens of GB/s, so one
    call per image costs about a microsecond for a 30 KB JPEG."""
    # The heads as one bytes object, sliced: a CRC of a numpy row costs ~20 us, of bytes ~4.
    heads = np.stack([ids, labels], axis=1).astype("<i8").tobytes()
    return np.fromiter((crc32(data, crc32(heads[16 * i:16 * i + 16]))
                        for i, data in enumerate(datas)), np.uint64, len(datas))
