"""Encoded images: JPEG quality 90 bytes written and read as they are, and decoded.

The bytes are the suite's images encoded once per run (``benchmarks.datasets.
encode_jpeg``). Results compare with ``raw-blob`` (the bytes in one file) and,
for decoding, with Pillow's ``Image.open(...).convert`` loop, in the same run.
Measured up to N = 10,000 (``ENCODED_MAX_N``).
"""
from __future__ import annotations

import io
import shutil

import numpy as np
from PIL import Image

from benchmarks.measure import rounds_for
from storage import open_store
from storage.core.files import disk_usage
from storage.decode import decode_images


def _label(benchmark, operation: str, backend: str, count: int, encoded) -> None:
    side = encoded.side
    benchmark.group = f"{operation} {side}px N={count}"
    benchmark.extra_info.update(operation=operation, backend=backend, N=count, side=side,
                                dataset=encoded.name, image_shape=[side, side, 3])


def _record(benchmark, datas, path=None) -> None:
    """Throughput in images and encoded bytes; disk against the sum of the encoded bytes."""
    encoded_bytes = sum(len(data) for data in datas)
    if path is not None:
        on_disk = disk_usage(path)
        benchmark.extra_info.update(bytes_on_disk=on_disk, encoded_bytes=encoded_bytes,
                                    disk_vs_encoded=round(on_disk / encoded_bytes, 4))
    stats = getattr(benchmark, "stats", None)
    if stats:
        median = stats.stats.median
        benchmark.extra_info.update(images_per_s=round(len(datas) / median, 1),
                                    MB_per_s=round(encoded_bytes / median / 1e6, 2))


def test_store_many_encoded(benchmark, encoded_backend, storage_n, encoded_dataset, tmp_path):
    """Create a store of N JPEG images: open, write_many of their bytes, close."""
    _label(benchmark, "store_many_encoded", encoded_backend, storage_n, encoded_dataset)
    benchmark.extra_info["durable"] = False
    datas, labels = encoded_dataset.take(storage_n)
    path = tmp_path / "store"

    def fresh_path():
        shutil.rmtree(path, ignore_errors=True)
        return (path,), {}

    def store_many(path):
        with open_store(path, encoded_backend, mode="w", durable=False,
                        encoding="jpeg") as store:
            store.write_many(datas, labels)

    benchmark.pedantic(store_many, setup=fresh_path, rounds=rounds_for(storage_n))
    _record(benchmark, datas, path)
    shutil.rmtree(path)


def test_read_many_encoded(benchmark, encoded_backend, storage_n, encoded_dataset,
                           built_stores):
    """Open a store of N JPEG images and read every image's bytes (no decoding)."""
    _label(benchmark, "read_many_encoded", encoded_backend, storage_n, encoded_dataset)
    path = built_stores.get(encoded_backend, storage_n, "jpeg")

    def read_many():
        with open_store(path, encoded_backend) as store:
            return store.read_many(range(storage_n))

    datas, labels = benchmark.pedantic(read_many, rounds=rounds_for(storage_n))
    expected, expected_labels = encoded_dataset.take(storage_n)
    assert datas == expected and np.array_equal(labels, expected_labels)
    _record(benchmark, datas, path)


def test_decode(benchmark, decoder, storage_n, encoded_dataset):
    """Decode N JPEG images into one (N, H, W, 3) array: storage.decode, or Pillow's loop."""
    _label(benchmark, "decode", decoder, storage_n, encoded_dataset)
    datas, _ = encoded_dataset.take(storage_n)
    decode = decode_images if decoder == "imagecodecs" else _pillow_decode
    images = benchmark.pedantic(decode, args=(datas,), rounds=rounds_for(storage_n))
    assert images.shape == (storage_n, encoded_dataset.side, encoded_dataset.side, 3)
    _record(benchmark, datas)


def _pillow_decode(datas) -> np.ndarray:
    out = None
    for row, data in enumerate(datas):
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
        if out is None:
            out = np.empty((len(datas), *pixels.shape), np.uint8)
        out[row] = pixels
    return out
