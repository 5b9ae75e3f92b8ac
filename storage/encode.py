"""Encode pixel arrays as JPEG or PNG bytes, on every core: the inverse of ``storage.decode``.

JPEG is written at quality 90 by libjpeg-turbo (the same pixels give the same bytes), PNG
by libpng; the codecs release the GIL, so threads scale. JPEG holds grey or RGB images
only (libjpeg would read 4 channels as CMYK), PNG grey, grey+alpha, RGB and RGBA.
"""
from __future__ import annotations

import imagecodecs
import numpy as np

from storage.core.threads import for_each_slice
from storage.errors import UnsupportedOperationError

JPEG_QUALITY = 90
CHANNELS = {"jpeg": (1, 3), "png": (1, 2, 3, 4)}


def check_channels(encoding: str, channels: int) -> None:
    """Refuse, before any work, images that ``encoding`` cannot hold."""
    if channels not in CHANNELS[encoding]:
        other = [name for name, held in CHANNELS.items() if channels in held]
        advice = f"choose --encoded {other[0]}" if other else "store pixel arrays"
        raise UnsupportedOperationError(
            f"{encoding} images have {' or '.join(map(str, CHANNELS[encoding]))} channels, "
            f"these have {channels}; {advice}")


def encode_image(image: np.ndarray, encoding: str) -> bytes:
    """One (H, W, C) uint8 image as ``encoding`` bytes."""
    check_channels(encoding, image.shape[-1])
    if image.shape[-1] == 1:
        image = image[..., 0]  # the codecs take grey images as (H, W)
    if encoding == "jpeg":
        return bytes(imagecodecs.jpeg8_encode(image, level=JPEG_QUALITY))
    return bytes(imagecodecs.png_encode(image))


def encode_images(images: np.ndarray, encoding: str) -> list[bytes]:
    """Each image of (N, H, W, C) uint8 ``images`` as ``encoding`` bytes, in order."""
    if len(images):
        check_channels(encoding, images.shape[-1])
    datas: list[bytes] = [b""] * len(images)

    def work(start: int, stop: int) -> None:
        for row in range(start, stop):
            datas[row] = encode_image(images[row], encoding)

    for_each_slice(work, len(images))
    return datas
