"""Real photographs cropped at any size, and the generated stand-in calibrated against them."""
from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from storage.errors import DatasetError
from storage.sources.photographs import PHOTOGRAPHS, photograph_crops
from storage.sources.synthetic import synthetic_images

SAMPLE = 40


def mean_bytes(images, encode) -> float:
    return float(np.mean([len(encode(image)) for image in images]))


def png(image):
    return imagecodecs.png_encode(image, level=1)


def jpeg(image):
    return imagecodecs.jpeg8_encode(image, level=90)


@pytest.mark.parametrize("side", [64, 256])
def test_crops_are_deterministic_and_distinct(side):
    images, labels = photograph_crops(SAMPLE, side, seed=3)
    again, same_labels = photograph_crops(SAMPLE, side, seed=3)
    assert images.shape == (SAMPLE, side, side, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, same_labels)
    assert set(labels.tolist()) <= set(range(len(PHOTOGRAPHS)))
    assert len({image.tobytes() for image in images}) == SAMPLE  # no crop repeats
    other, _ = photograph_crops(SAMPLE, side, seed=4)
    assert not np.array_equal(images, other)


def test_a_bad_side_is_refused():
    with pytest.raises(DatasetError, match="at least 8"):
        photograph_crops(2, 4)
    with pytest.raises(DatasetError, match="integer"):
        photograph_crops(2, 256.0)


@pytest.mark.parametrize("side", [256, 512])
def test_generated_images_compress_like_the_photographs(side):
    """Mean PNG and JPEG sizes within 25 % of real crops', so codecs are not flattered."""
    generated, labels = synthetic_images(SAMPLE, side)
    real, _ = photograph_crops(SAMPLE, side)
    assert generated.shape == (SAMPLE, side, side, 3) and set(labels.tolist()) <= set(range(10))
    for encode in (png, jpeg):
        ratio = mean_bytes(generated, encode) / mean_bytes(real, encode)
        assert 0.75 <= ratio <= 1.25, (encode.__name__, ratio)


def test_generated_images_at_a_size_are_a_seeded_prefix():
    images, labels = synthetic_images(30, 128, seed=5)
    fewer, fewer_labels = synthetic_images(7, 128, seed=5)
    np.testing.assert_array_equal(images[:7], fewer)
    np.testing.assert_array_equal(labels[:7], fewer_labels)
    assert not np.array_equal(synthetic_images(7, 128, seed=6)[0], fewer)
