"""Per-image CRC-32 over id, label and pixels, for formats that check nothing themselves.

``crc = zlib.crc32(pixels, zlib.crc32(id.to_bytes(8, "little") + label.to_bytes(8, "little",
signed=True)))``: one stored number catches damaged pixels, a damaged label, and an
image that turns up under another id.
"""
from __future__ import annotations

import zlib

import numpy as np

from storage.errors import CorruptStoreError


def image_crcs(ids: np.ndarray, labels: np.ndarray, images: np.ndarray) -> np.ndarray:
    """uint32 CRC-32 of each image's id and label (int64 little-endian) then its pixels."""
    keys = np.empty((len(ids), 2), "<i8")
    keys[:, 0], keys[:, 1] = ids, labels
    return np.fromiter((zlib.crc32(image, zlib.crc32(key)) for image, key in zip(images, keys)),
                       np.uint32, len(ids))


def verify_crcs(ids, labels, images, stored: np.ndarray, where: str) -> None:
    """Raise CorruptStoreError naming the ids whose image, label or id fail their CRC."""
    bad = np.flatnonzero(image_crcs(ids, labels, images) != stored)
    if len(bad):
        shown = ", ".join(str(int(key)) for key in ids[bad[:5]])
        raise CorruptStoreError(
            f"image(s) {shown} in {where} fail their checksum; the store is damaged "
            "(restore it from a copy, or rewrite those images with overwrite=True)")
