"""`convert --encoded`: JPEG close to the source, PNG exact, `keep` byte for byte, in one
store and in shards; `info` names the encoding, `verify` checks encoded stores."""
from __future__ import annotations

import json

import numpy as np
import pytest

from storage import open_store
from storage.cli import main
from storage.cli.verify import verify_store
from storage.convert import convert
from storage.core.encodings import SIGNATURES
from storage.decode import decode_images
from tests.convert.conftest import make_store

pytestmark = pytest.mark.timeout(60)


def smooth_images(count: int, seed: int = 3) -> np.ndarray:
    """Gradients with mild noise: photograph-like, so JPEG quality 90 keeps them close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32]
    images = np.empty((count, 32, 32, 3), np.uint8)
    for row in range(count):
        slope = rng.uniform(1, 4, 3)
        base = (x[..., None] * slope + y[..., None] * slope[::-1] + rng.uniform(0, 80, 3))
        images[row] = np.clip(base + rng.normal(0, 2, (32, 32, 3)), 0, 255).astype(np.uint8)
    return images


def psnr(got: np.ndarray, want: np.ndarray) -> float:
    error = np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / error))


@pytest.fixture(scope="module")
def pixel_source(tmp_path_factory):
    """An lmdb store of 24 smooth RGB images with labels."""
    path = tmp_path_factory.mktemp("pixels") / "store"
    images, labels = smooth_images(24), np.arange(24) % 5
    with open_store(path, "lmdb", "w") as store:
        store.write_many(images, labels)
    return path, images, labels


def read_all(path):
    with open_store(path) as store:
        return store.encoding, *store.read_many(store.ids())


def test_jpeg_round_trip_is_close_and_decodes_back_to_arrays(pixel_source, tmp_path, capsys):
    source, images, labels = pixel_source
    jpeg = tmp_path / "jpeg"
    assert main(["convert", str(source), str(jpeg), "--format", "lmdb", "--encoded", "jpeg",
                 "--quiet"]) == 0
    encoding, datas, got_labels = read_all(jpeg)
    assert encoding == "jpeg" and all(data.startswith(SIGNATURES["jpeg"]) for data in datas)
    np.testing.assert_array_equal(got_labels, labels)
    decoded = decode_images(datas)
    assert decoded.shape == images.shape and psnr(decoded, images) > 30
    capsys.readouterr()
    assert main(["info", str(jpeg), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["encoding"] == "jpeg" and facts["count"] == 24 and "jpeg" in facts["mode"]
    assert main(["verify", str(jpeg)]) == 0
    # --encoded none (the default) from an encoded store: the decoded pixels, as arrays.
    arrays = tmp_path / "arrays"
    assert main(["convert", str(jpeg), str(arrays), "--format", "hdf5", "--quiet"]) == 0
    encoding, pixels, got_labels = read_all(arrays)
    assert encoding is None
    np.testing.assert_array_equal(pixels, decoded)
    np.testing.assert_array_equal(got_labels, labels)


def test_png_is_lossless_and_keep_copies_the_bytes_unchanged(tmp_path):
    source = tmp_path / "source"
    images, labels = make_store(source, 20, shape=(9, 7, 3))  # noise: any loss would show
    convert(source, tmp_path / "png", "hdf5", encoded="png")
    encoding, datas, got_labels = read_all(tmp_path / "png")
    assert encoding == "png" and all(data.startswith(SIGNATURES["png"]) for data in datas)
    np.testing.assert_array_equal(decode_images(datas), images)
    np.testing.assert_array_equal(got_labels, labels)
    convert(tmp_path / "png", tmp_path / "kept", "png", encoded="keep")
    encoding, kept, kept_labels = read_all(tmp_path / "kept")
    assert encoding == "png" and kept == datas
    np.testing.assert_array_equal(kept_labels, labels)
    assert verify_store(tmp_path / "kept").clean


def test_keep_copies_the_files_of_an_image_folder(pixel_source, tmp_path):
    _, images, _ = pixel_source
    from storage.encode import encode_images

    files = {}
    for label, name in enumerate(("cat", "dog")):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for number, data in enumerate(encode_images(images[label * 3:label * 3 + 3], "jpeg")):
            (tmp_path / "folder" / name / f"{number}.jpg").write_bytes(data)
            files[(label, number)] = data
    convert(tmp_path / "folder", tmp_path / "out", "lmdb", encoded="keep")
    encoding, datas, labels = read_all(tmp_path / "out")
    assert encoding == "jpeg" and datas == list(files.values())
    assert labels.tolist() == [label for label, _ in files]


@pytest.mark.parametrize("case", ["format without jpeg", "keep from pixels",
                                  "jpeg of 4 channels", "pixels into raw-blob"])
def test_what_cannot_be_encoded_is_one_line_and_leaves_nothing(case, pixel_source, tmp_path,
                                                               capsys):
    source = pixel_source[0]
    if case == "jpeg of 4 channels":
        source = tmp_path / "rgba"
        make_store(source, 3, backend="png", shape=(4, 4, 4))
    format_, encoded = {"format without jpeg": ("raw", "jpeg"),
                        "keep from pixels": ("lmdb", "keep"),
                        "jpeg of 4 channels": ("lmdb", "jpeg"),
                        "pixels into raw-blob": ("raw-blob", "none")}[case]
    out = tmp_path / "out"
    for sharding in ([], ["--shards", "2"]):
        assert main(["convert", str(source), str(out), "--format", format_, "--encoded",
                     encoded, *sharding]) == 2
        stdout, stderr = capsys.readouterr()
        assert stdout == "" and len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("error: ") and "internal" not in stderr
        assert not out.exists() and not (tmp_path / ".out.converting").exists()


def test_sharded_jpeg_reads_verifies_and_catches_a_swapped_image(pixel_source, dask_executor,
                                                                 tmp_path, capsys):
    source, images, labels = pixel_source
    out = tmp_path / "out"
    result = convert(source, out, "lmdb", shards=3, encoded="jpeg", executor=dask_executor)
    assert len(result.built) == 3
    with open_store(out) as store:
        assert store.encoding == "jpeg" and store.index.encoding == "jpeg"
        ids = np.array([23, 0, 9, 8, 16, 2])  # across all three shards, out of order
        datas, got_labels = store.read_many(ids)
        one, _ = store.read_one(17)
    decoded = decode_images(datas)
    assert psnr(decoded, images[ids]) > 30
    np.testing.assert_array_equal(got_labels, labels[ids])
    assert one.startswith(SIGNATURES["jpeg"])
    assert verify_store(out).clean
    assert main(["info", str(out)]) == 0 and "encoding     jpeg" in capsys.readouterr().out
    # The same command again has nothing to do; another encoding is refused, not mixed in.
    assert not convert(source, out, "lmdb", shards=3, encoded="jpeg",
                       executor=dask_executor).built
    assert main(["convert", str(source), str(out), "--format", "lmdb", "--shards", "3",
                 "--encoded", "png"]) == 2 and "encoded jpeg" in capsys.readouterr().err
    # An image replaced through the shard itself keeps the shard's own CRCs valid: the
    # index's checksum over the bytes finds it.
    with open_store(out / "shard-00001", mode="a") as shard:
        data, label = shard.read_one(9)
        shard.write_one(9, datas[0], label, overwrite=True)
    report = verify_store(out)
    assert not report.clean and any("index checksum" in problem for problem in report.problems)
