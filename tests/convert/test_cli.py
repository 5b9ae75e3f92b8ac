"""`python -m storage`: convert, info and verify as a user runs them; errors are one line."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from storage.convert.progress import Progress
from tests.convert.conftest import make_store, write_image_folder

pytestmark = pytest.mark.timeout(120)
REPOSITORY = Path(__file__).resolve().parents[2]


def storage_cli(*arguments, timeout=60):
    return subprocess.run([sys.executable, "-m", "storage", *map(str, arguments)],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A png store of 30 images converted to 3 png shards by the CLI (on its LocalCluster)."""
    root = tmp_path_factory.mktemp("cli")
    make_store(root / "source", 30)
    finished = storage_cli("convert", root / "source", root / "out", "--format", "png",
                           "--shards", "3", "--workers", "2")
    assert finished.returncode == 0, finished.stderr
    assert "converted 30 images" in finished.stdout and finished.stderr == ""
    return root


def test_info_names_format_shards_count_and_ids(converted):
    finished = storage_cli("info", converted / "out")
    assert finished.returncode == 0
    assert "sharded (3 png shards" in finished.stdout and "0..29" in finished.stdout
    facts = json.loads(storage_cli("info", converted / "out", "--json").stdout)
    assert facts["count"] == 30 and facts["shards"] == 3 and facts["image_shape"] == [8, 8, 3]
    assert facts["disk_bytes"] > 0 and facts["format_version"] == 1


def test_a_second_convert_has_nothing_to_do(converted):
    finished = storage_cli("convert", converted / "source", converted / "out", "--format",
                           "png", "--shards", "3")
    assert finished.returncode == 0 and "nothing to do" in finished.stdout


def test_verify_clean_then_names_the_damaged_ids(converted, tmp_path):
    import shutil

    clean = storage_cli("verify", converted / "out")
    assert clean.returncode == 0 and "30 images verified, clean" in clean.stdout
    damaged = tmp_path / "damaged"
    shutil.copytree(converted / "out", damaged)
    for key in (12, 13):  # shard-00001 holds ids 10..19
        image = damaged / "shard-00001" / "images" / f"{key:08d}.png"
        data = bytearray(image.read_bytes())
        data[len(data) // 2] ^= 0xFF
        image.write_bytes(bytes(data))
    finished = storage_cli("verify", damaged)
    assert finished.returncode == 1
    assert "damaged ids: 12-13" in finished.stdout


def test_verify_checks_the_index_checksum_of_each_shard(converted, tmp_path):
    import shutil

    from storage import open_store

    swapped = tmp_path / "swapped"
    shutil.copytree(converted / "out", swapped)
    # Rewrite one image of a shard through the store itself: its own CRCs stay valid.
    with open_store(swapped / "shard-00002", "png", "a") as store:
        image, label = store.read_one(25)
        store.write_one(25, 255 - image, label, overwrite=True)
    finished = storage_cli("verify", swapped)
    assert finished.returncode == 1
    assert "shard-00002 (ids 20-29)" in finished.stdout and "index checksum" in finished.stdout


@pytest.mark.parametrize("case", ["missing source", "unknown format", "holds another store",
                                  "bad scheduler", "unreadable image", "encoded", "not a store"])
def test_errors_are_one_line_with_exit_status_2(case, converted, tmp_path):
    source, out = converted / "source", tmp_path / "out"
    arguments = {
        "missing source": ("convert", tmp_path / "nothing", out, "--format", "lmdb"),
        "unknown format": ("convert", source, out, "--format", "tiff"),
        "holds another store": ("convert", source, source, "--format", "lmdb", "--shards", "2"),
        "bad scheduler": ("convert", source, out, "--format", "lmdb", "--shards", "2",
                          "--scheduler", "not-an-address"),
        "unreadable image": ("convert", tmp_path / "folder", out, "--format", "lmdb"),
        "encoded": ("convert", source, out, "--format", "lmdb", "--encoded", "jpeg"),
        "not a store": ("verify", tmp_path),
    }[case]
    if case == "unreadable image":
        write_image_folder(tmp_path / "folder")
        (tmp_path / "folder" / "cat" / "001.png").write_bytes(b"not a png")
    finished = storage_cli(*arguments)
    assert finished.returncode == 2, finished
    assert finished.stdout == "" and len(finished.stderr.strip().splitlines()) == 1
    assert finished.stderr.startswith("error: ") and "Traceback" not in finished.stderr
    if case == "unreadable image":
        assert "001.png" in finished.stderr
    assert not out.exists()  # a failed conversion left nothing behind


def test_progress_shows_rates_and_time_left_only_when_asked():
    stream = io.StringIO()
    progress = Progress("convert", enabled=True, stream=stream)
    progress.start(100)
    progress.advance(50, 5 * 1024**2)
    progress.finish()
    line = stream.getvalue().rsplit("\r", 1)[-1]
    assert "50/100" in line and "img/s" in line and "iB/s" in line and "ETA" in line
    quiet = io.StringIO()  # StringIO is not a terminal
    Progress("convert", stream=quiet).start(10)
    assert quiet.getvalue() == ""
