"""The generated stand-in for CIFAR-10, and how a Dataset hands out N images."""
from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from storage.sources.cifar import load_cifar
from benchmarks.datasets import CIFAR_ENV, Dataset, load_dataset
from storage.errors import DatasetError
from storage.formats.png import ZLIB_LEVEL
from storage.sources.synthetic import synthetic_cifar
from tests.strategies import real_cifar10_dir

SAMPLE = 2000


def mean_png_bytes(images: np.ndarray) -> float:
    """Mean file size with the PNG backend's own encoder and level."""
    return float(np.mean([len(imagecodecs.png_encode(image, level=ZLIB_LEVEL))
                          for image in images]))


def neighbour_correlation(images: np.ndarray) -> float:
    """Median over images of the correlation of horizontally adjacent pixels."""
    pixels = images.astype(np.float64)
    pixels -= pixels.mean(axis=(1, 2, 3), keepdims=True)
    left, right = pixels[:, :, :-1], pixels[:, :, 1:]
    per_image = (left * right).sum(axis=(1, 2, 3)) / np.sqrt(
        (left**2).sum(axis=(1, 2, 3)) * (right**2).sum(axis=(1, 2, 3)))
    return float(np.median(per_image))


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_cifar(SAMPLE)


def test_cifar_shaped(synthetic):
    images, labels = synthetic
    assert images.shape == (SAMPLE, 32, 32, 3) and images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert labels.shape == (SAMPLE,) and labels.dtype == np.int64
    counts = np.bincount(labels, minlength=10)
    assert len(counts) == 10 and counts.min() > SAMPLE / 10 / 2  # every class, none rare
    assert images.min() < 30 and images.max() > 225  # spans the range, as photos do


def test_deterministic_for_a_seed(synthetic):
    images, labels = synthetic_cifar(SAMPLE)
    np.testing.assert_array_equal(images, synthetic[0], strict=True)
    np.testing.assert_array_equal(labels, synthetic[1], strict=True)
    other_images, other_labels = synthetic_cifar(SAMPLE, seed=1)
    assert (other_images != images).mean() > 0.5 and (other_labels != labels).mean() > 0.5


def test_prefix_stable(synthetic):
    longer_images, longer_labels = synthetic_cifar(5003)  # past one generation batch of 5000
    np.testing.assert_array_equal(longer_images[:SAMPLE], synthetic[0])
    np.testing.assert_array_equal(longer_labels[:SAMPLE], synthetic[1])
    for count in (0, 1, 5001):
        images, labels = synthetic_cifar(count)
        np.testing.assert_array_equal(images, longer_images[:count], strict=True)
        np.testing.assert_array_equal(labels, longer_labels[:count], strict=True)


def test_png_size_within_a_quarter_of_real_cifar10(synthetic):
    real = real_cifar10_dir()
    if real is None:
        pytest.skip("real CIFAR-10 not found ($CIFAR10_DIR or ../shared/data/cifar-10-batches-py)"
                    ": nothing to compare the generated images' PNG size with")
    real_images = load_cifar(real, "train")[0][:SAMPLE]
    ratio = mean_png_bytes(synthetic[0]) / mean_png_bytes(real_images)
    assert 0.75 <= ratio <= 1.25, f"generated/real mean PNG size = {ratio:.3f}"


def test_not_noise_like(synthetic):
    noise = np.random.default_rng(0).integers(0, 256, synthetic[0].shape, dtype=np.uint8)
    assert mean_png_bytes(synthetic[0]) < 0.8 * mean_png_bytes(noise)
    # Photographs are smooth: neighbours correlate strongly (real CIFAR-10 about 0.9).
    assert neighbour_correlation(synthetic[0]) > 0.8
    assert abs(neighbour_correlation(noise)) < 0.1  # the measure tells noise apart


def test_load_dataset_defaults_to_the_generated_images(monkeypatch, synthetic):
    monkeypatch.delenv(CIFAR_ENV, raising=False)
    dataset = load_dataset(count=10)
    assert dataset.name == "synthetic-cifar (seed 0)"
    np.testing.assert_array_equal(dataset.images, synthetic[0][:10], strict=True)
    np.testing.assert_array_equal(dataset.labels, synthetic[1][:10], strict=True)


def test_load_dataset_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CIFAR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset(count=10)


def test_take_within_the_data():
    dataset = Dataset("ramp", np.arange(30, dtype=np.uint8).reshape(10, 1, 1, 3),
                      np.arange(10, dtype=np.int64))
    images, labels = dataset.take(4)
    np.testing.assert_array_equal(images, dataset.images[:4], strict=True)
    np.testing.assert_array_equal(labels, np.arange(4), strict=True)


def test_take_tiles_past_the_end():
    # 50,000 distinct tiny images stand in for CIFAR-10's training set.
    count = 50_000
    dataset = Dataset("ramp", (np.arange(count) % 251).astype(np.uint8).reshape(count, 1, 1, 1),
                      np.arange(count, dtype=np.int64))
    images, labels = dataset.take(100_000)  # uses the data twice, in order
    assert images.shape == (100_000, 1, 1, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(100_000) % count, strict=True)
    np.testing.assert_array_equal(images[:count], dataset.images, strict=True)
    np.testing.assert_array_equal(images[count:], dataset.images, strict=True)
    _, labels = dataset.take(count + 7)
    np.testing.assert_array_equal(labels[count:], np.arange(7))
