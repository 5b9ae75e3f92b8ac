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


ERROR_CASES = ["missing source", "unknown format", "holds another store", "bad scheduler",
               "unreadable image", "encoded", "not a store"]


def _error_arguments(case, converted, tmp_path):
    source, out = converted / "source", tmp_path / "out"
    if case == "unreadable image":
        write_image_folder(tmp_path / "folder")
        (tmp_path / "folder" / "cat" / "001.png").write_bytes(b"not a png")
    return {
        "missing source": ("convert", tmp_path / "nothing", out, "--format", "lmdb"),
        "unknown format": ("convert", source, out, "--format", "tiff"),
        "holds another store": ("convert", source, source, "--format", "lmdb", "--shards", "2"),
        "bad scheduler": ("convert", source, out, "--format", "lmdb", "--shards", "2",
                          "--scheduler", "not-an-address"),
        "unreadable image": ("convert", tmp_path / "folder", out, "--format", "lmdb"),
        "encoded": ("convert", source, out, "--format", "raw", "--encoded", "jpeg"),
        "not a store": ("verify", tmp_path),
    }[case]


def _assert_one_line_error(returncode, stdout, stderr, case, out):
    assert returncode == 2, (stdout, stderr)
    assert stdout == "" and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("error: ") and "Traceback" not in stderr
    if case == "unreadable image":
        assert "001.png" in stderr
    assert not out.exists()  # a failed conversion left nothing behind


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_are_one_line_with_exit_status_2(case, converted, tmp_path, capsys):
    from storage.cli import main

    arguments = _error_arguments(case, converted, tmp_path)
    returncode = main([str(argument) for argument in arguments])
    _assert_one_line_error(returncode, *capsys.readouterr(), case, tmp_path / "out")


@pytest.mark.parametrize("case", ["missing source", "bad scheduler"])
def test_errors_are_one_line_from_a_fresh_process(case, converted, tmp_path):
    """The same through `python -m storage`: nothing else (a logger, a warning) prints."""
    finished = storage_cli(*_error_arguments(case, converted, tmp_path))
    _assert_one_line_error(finished.returncode, finished.stdout, finished.stderr, case,
                           tmp_path / "out")


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


def _not_a_store(tmp_path, case):
    """A path that ``info`` and ``verify`` must refuse, made as ``case`` says."""
    from storage.core.marker import write_marker

    path = tmp_path / "store"
    if case == "missing":
        return path
    if case == "a file":
        path.write_bytes(b"images")
    elif case == "a folder of files":
        path.mkdir()
        (path / "notes.txt").write_text("no store here")
    elif case == "a damaged marker":
        path.mkdir()
        (path / "store.json").write_text('{"format": "image-st')
    elif case == "an unknown format":
        path.mkdir()
        write_marker(path, "tiff", [8, 8, 3])
    return path


@pytest.mark.parametrize("command", ["info", "verify"])
@pytest.mark.parametrize("case", ["missing", "a file", "a folder of files", "a damaged marker",
                                  "an unknown format"])
def test_info_and_verify_refuse_what_is_not_a_store_in_one_line(command, case, tmp_path,
                                                                 capsys):
    from storage.cli import EXIT_ERROR, main

    path = _not_a_store(tmp_path, case)
    assert main([command, str(path)]) == EXIT_ERROR
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and str(path) in err  # a StoreError, never "internal"


def test_an_interrupted_conversion_leaves_no_store_that_looks_complete(converted, tmp_path,
                                                                      monkeypatch, capsys):
    from storage import open_store
    from storage.cli import EXIT_ERROR, EXIT_INTERRUPTED, main
    from storage.errors import StoreNotFoundError

    def ctrl_c(self, images, nbytes=0):
        raise KeyboardInterrupt

    monkeypatch.setattr("storage.convert.single.BATCH_BYTES", 8 * 8 * 3 * 10)  # 3 batches
    monkeypatch.setattr(Progress, "advance", ctrl_c)
    out = tmp_path / "out"
    assert main(["convert", str(converted / "source"), str(out), "--format", "lmdb",
                 "--quiet"]) == EXIT_INTERRUPTED
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and len(stderr.strip().splitlines()) == 1 and "again" in stderr
    with pytest.raises(StoreNotFoundError):
        open_store(out)
    for command in ("info", "verify"):
        assert main([command, str(out)]) == EXIT_ERROR
        assert "interrupted" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["convert", str(converted / "source"), str(out), "--format", "lmdb"]) == 0
    assert "converted 30 images" in capsys.readouterr().out
    assert main(["verify", str(out)]) == 0


def test_ctrl_c_stops_a_sharded_conversion_in_one_line(tmp_path):
    """Ctrl-C reaches the driver and its local workers (one process group), as in a terminal."""
    import os
    import signal
    import time

    from storage import open_store
    from storage.errors import IncompleteStoreError

    source, out = tmp_path / "source", tmp_path / "out"
    # Shards of 1,000 images: the run goes on for seconds after the first is committed,
    # even when this process, stalled by a busy disk, sees that marker late.
    make_store(source, 24_000, shape=(32, 32, 3))
    # A shell in a terminal starts the command with Ctrl-C at its default, unblocked; this
    # test process may not have it so (a child inherits an ignored or blocked signal).
    as_from_a_shell = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                       "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    driver = subprocess.Popen(
        [sys.executable, "-c", as_from_a_shell, "-m", "storage", "convert", source, out,
         "--format", "png", "--shards", "24", "--workers", "1"],
        cwd=REPOSITORY, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("shard-*.done")) if out.exists() else True:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no shard was committed within 60 s"
            time.sleep(0.01)
        os.killpg(driver.pid, signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(30)
    assert driver.returncode == 130 and stdout == "", (driver.returncode, stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1 and "again" in stderr, stderr
    with pytest.raises(IncompleteStoreError):
        open_store(out)
    refused = storage_cli("info", out)
    assert refused.returncode == 2 and "has no index.json" in refused.stderr
