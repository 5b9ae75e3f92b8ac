"""Decoding encoded images into arrays: the same pixels as Pillow, typed errors for bad bytes."""
from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from storage.decode import decode_image, decode_images, encoding_of
from storage.errors import ImageFormatError, ShapeMismatchError
from storage.sources.synthetic import synthetic_images


@pytest.fixture(scope="module")
def images():
    return synthetic_images(150, 64)[0]  # enough rows for the decoder to use threads


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_png_round_trips_exactly(images):
    datas = [imagecodecs.png_encode(image) for image in images]
    assert encoding_of(datas[0]) == "png"
    np.testing.assert_array_equal(decode_images(datas), images)


def test_jpeg_decodes_to_what_pillow_decodes(images):
    datas = [imagecodecs.jpeg8_encode(image, level=90) for image in images]
    assert encoding_of(datas[0]) == "jpeg"
    decoded = decode_images(datas)
    expected = np.stack([pillow_decode(data) for data in datas])
    assert decoded.shape == images.shape
    # Both are libjpeg-turbo; allow a rounding step where builds differ in IDCT.
    assert np.abs(decoded.astype(int) - expected).max() <= 1


def test_greyscale_gets_a_channel_axis():
    grey = np.ascontiguousarray(synthetic_images(1, 32)[0][0, :, :, 0])
    assert decode_image(imagecodecs.png_encode(grey)).shape == (32, 32, 1)


def test_bytes_that_are_no_image_are_refused(images):
    with pytest.raises(ImageFormatError, match="neither JPEG nor PNG"):
        decode_image(b"GIF89a....")
    damaged = imagecodecs.jpeg8_encode(images[0])[:40]
    with pytest.raises(ImageFormatError, match="cannot decode"):
        decode_image(damaged)


def test_mixed_sizes_are_refused_with_the_row(images):
    datas = [imagecodecs.png_encode(image) for image in images[:3]]
    datas.append(imagecodecs.png_encode(images[0][:32]))
    with pytest.raises(ShapeMismatchError, match="image 3"):
        decode_images(datas)


def test_nothing_to_decode():
    assert decode_images([]).shape == (0, 0, 0, 0)
