"""The bytes of a tar shard: USTAR headers built in bulk, samples at a fixed stride.

One sample is four 512-byte-aligned parts, so every sample of a shard takes
``stride`` bytes and its pixels sit at ``first + row * stride``::

    header of "{id:010d}.npy"   512 bytes, USTAR (``TarInfo.tobuf(USTAR_FORMAT)``)
    its data                    what ``np.save`` writes (npy header + pixels), zero-padded
    header of "{id:010d}.cls"   512 bytes
    its data                    the label in ASCII decimal, zero-padded to 512 bytes

Headers come from one ``tobuf`` template per member type; names, sizes and
the header checksum are then filled in with numpy for a whole batch at once
(``tests/test_tar.py`` checks them against ``tobuf`` byte for byte).
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from functools import cached_property

import numpy as np

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
LABEL_BYTES = 2 * BLOCK  # a sample's .cls member: its header and one block of data
MAX_MEMBER_BYTES = 8**11 - 1  # the largest size a USTAR header's 11 octal digits hold
_LABEL_DIGITS = 20  # "-9223372036854775808"
_NAME, _SIZE, _CHECKSUM = slice(0, 100), slice(124, 136), slice(148, 156)


def padded(size):
    """``size`` (an int or an int64 array) rounded up to whole 512-byte blocks."""
    return -(-size // BLOCK) * BLOCK


def _template(size: int) -> np.ndarray:
    info = tarfile.TarInfo("0000000000.npy")
    info.size, info.mode, info.mtime = size, 0o644, 0
    return np.frombuffer(info.tobuf(tarfile.USTAR_FORMAT), np.uint8)


@dataclass(frozen=True)
class SampleLayout:
    """Where each part of a sample of ``image_shape`` uint8 pixels sits."""
    image_shape: tuple[int, ...]

    @cached_property
    def npy_header(self) -> bytes:
        """The bytes ``np.save`` writes before the pixels of one image."""
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(self.image_shape, np.uint8))
        return buffer.getvalue()[:-self.image_bytes]

    @property
    def image_bytes(self) -> int:
        return int(np.prod(self.image_shape))

    @property
    def npy_size(self) -> int:
        return len(self.npy_header) + self.image_bytes

    @property
    def data_offset(self) -> int:
        """From the start of a sample to the .npy member's data (the index's offset)."""
        return BLOCK

    @property
    def pixel_offset(self) -> int:
        return BLOCK + len(self.npy_header)

    @property
    def stride(self) -> int:
        return BLOCK + padded(self.npy_size) + BLOCK + BLOCK

    def samples(self, ids: np.ndarray, labels: np.ndarray, images: np.ndarray) -> np.ndarray:
        """The tar bytes of ``len(ids)`` samples, (n, stride) uint8."""
        count = len(ids)
        out = np.zeros((count, self.stride), np.uint8)
        stems = stems_of(ids)
        npy_headers = np.broadcast_to(_template(self.npy_size), (count, BLOCK)).copy()
        npy_headers[:, _NAME] = _names(stems, b".npy")
        out[:, :BLOCK] = _with_checksums(npy_headers)
        start = BLOCK
        out[:, start:start + len(self.npy_header)] = np.frombuffer(self.npy_header, np.uint8)
        out[:, self.pixel_offset:self.pixel_offset + self.image_bytes] = images.reshape(count, -1)
        start = BLOCK + padded(self.npy_size)
        out[:, start:start + LABEL_BYTES] = label_members(stems, labels)
        return out


def label_members(stems: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample's "{id:010d}.cls" member (header and padded data), (n, LABEL_BYTES) uint8."""
    count = len(labels)
    text = labels.astype(f"S{_LABEL_DIGITS}")  # ASCII decimal, NUL-padded
    digits = np.frombuffer(text.tobytes(), np.uint8).reshape(count, _LABEL_DIGITS)
    out = np.zeros((count, LABEL_BYTES), np.uint8)
    out[:, :BLOCK] = member_headers(stems, b".cls", (digits != 0).sum(axis=1))
    out[:, BLOCK:BLOCK + _LABEL_DIGITS] = digits
    return out


def member_headers(stems: np.ndarray, suffix: bytes, sizes: np.ndarray) -> np.ndarray:
    """USTAR headers of regular files "{stem}{suffix}" of ``sizes`` bytes, (n, BLOCK) uint8."""
    headers = np.broadcast_to(_template(0), (len(stems), BLOCK)).copy()
    headers[:, _NAME] = _names(stems, suffix)
    headers[:, _SIZE] = _octal_field(sizes, 11)
    return _with_checksums(headers)


def stems_of(ids: np.ndarray) -> np.ndarray:
    """``f"{id:010d}"`` of each id, as a NUL-padded bytes array."""
    return np.char.zfill(ids.astype("S19"), 10)


def _names(stems: np.ndarray, suffix: bytes) -> np.ndarray:
    names = np.char.add(stems, suffix).astype("S100")
    return np.frombuffer(names.tobytes(), np.uint8).reshape(len(stems), 100)


def _octal_field(values: np.ndarray, digits: int) -> np.ndarray:
    """``"%0{digits}o\\0"`` of each value, as (n, digits + 1) uint8."""
    shifts = 3 * np.arange(digits - 1, -1, -1, dtype=np.int64)
    field = np.zeros((len(values), digits + 1), np.uint8)
    field[:, :digits] = ((values.astype(np.int64)[:, None] >> shifts) & 7) + ord("0")
    return field


def _with_checksums(headers: np.ndarray) -> np.ndarray:
    """Headers with their checksum field set as tarfile does: ``"%06o\\0 "``."""
    headers[:, _CHECKSUM] = ord(" ")
    sums = headers.sum(axis=1, dtype=np.int64)
    headers[:, 148:155] = _octal_field(sums, 6)
    return headers
