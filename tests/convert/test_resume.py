"""Conversions stopped anywhere resume: committed shards are kept, leftovers rebuilt or removed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storage import open_store
from storage.convert import convert, shard as shard_module
from storage.convert.engines import SerialExecutor
from storage.convert.lease import Lease
from storage.cli.verify import verify_store
from storage.convert.single import partial_path
from storage.errors import (
    IncompleteStoreError, StoreBusyError, StoreExistsError, StoreNotFoundError)
from storage.sharded.index import INDEX
from tests.convert.conftest import leftovers, make_store, read_back_crcs, sample_crcs

pytestmark = pytest.mark.timeout(90)
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "store"
    images, labels = make_store(path, 60)
    return path, sample_crcs(images, labels)


def markers(path: Path) -> list[str]:
    return sorted(entry.name.removesuffix(".done") for entry in path.glob("shard-*.done"))


def test_a_rerun_over_a_complete_store_does_nothing(source, dask_executor, tmp_path):
    path, expected = source
    convert(path, tmp_path / "out", "lmdb", shards=4, executor=dask_executor)
    before = {entry.name: entry.stat().st_mtime_ns for entry in (tmp_path / "out").iterdir()}
    again = convert(path, tmp_path / "out", "lmdb", shards=4, executor=dask_executor)
    assert again.built == [] and len(again.skipped) == 4
    assert {entry.name: entry.stat().st_mtime_ns
            for entry in (tmp_path / "out").iterdir()} == before
    assert read_back_crcs(tmp_path / "out") == expected


def test_partial_leftovers_are_rebuilt_or_removed(source, dask_executor, tmp_path):
    path, expected = source
    out = tmp_path / "out"
    convert(path, out, "hdf5", shards=5, executor=dask_executor)
    (out / INDEX).unlink()
    (out / "shard-00001.done").unlink()                          # renamed, marker not written
    (out / "shard-00003.done").write_text('{"plan": "damaged"')  # torn marker
    (out / ".tmp-shard-00002-stale").mkdir()                     # a move that never finished
    (out / ".tmp-shard-00002-stale" / "data").write_bytes(b"half")
    (out / "shard-00004").rename(out / "shard-00004-gone")       # marker without its shard
    (out / "shard-00004-gone").rename(out / ".tmp-shard-00004-x")
    with pytest.raises(IncompleteStoreError, match="convert"):
        open_store(out)
    result = convert(path, out, "hdf5", shards=5, executor=dask_executor)
    assert result.built == ["shard-00001", "shard-00003", "shard-00004"]
    assert result.skipped == ["shard-00000", "shard-00002"]
    assert leftovers(out) == [] and markers(out) == [f"shard-0000{n}" for n in range(5)]
    assert read_back_crcs(out) == expected


def test_a_second_driver_is_refused_while_the_lease_is_held(source, dask_executor, tmp_path):
    path, _ = source
    convert(path, tmp_path / "out", "lmdb", shards=2, executor=dask_executor)
    (tmp_path / "out" / INDEX).unlink()
    with Lease(tmp_path / "out"):
        with pytest.raises(StoreBusyError, match="another convert"):
            convert(path, tmp_path / "out", "lmdb", shards=2, executor=dask_executor)
    assert (tmp_path / "out" / "store.json").exists()  # the refused run removed nothing


def test_another_source_is_refused_unless_replacing(source, dask_executor, tmp_path):
    path, _ = source
    other = tmp_path / "other"
    images, labels = make_store(other, 10, seed=7)
    convert(path, tmp_path / "out", "lmdb", shards=2, executor=dask_executor)
    with pytest.raises(StoreExistsError, match="--no-resume"):
        convert(other, tmp_path / "out", "lmdb", shards=2, executor=dask_executor)
    with pytest.raises(StoreExistsError, match="--no-resume"):
        convert(path, tmp_path / "out", "lmdb", shards=3, executor=dask_executor)
    convert(other, tmp_path / "out", "lmdb", shards=2, executor=dask_executor, resume=False)
    assert read_back_crcs(tmp_path / "out") == sample_crcs(images, labels)


class StopAfter:
    """A progress display that presses Ctrl-C after ``batches`` updates."""

    def __init__(self, batches: int):
        self.batches = batches

    def start(self, total, done=0):
        self.resumed_at = done

    def advance(self, images, nbytes=0):
        self.batches -= 1
        if self.batches == 0:
            raise KeyboardInterrupt

    def finish(self):
        pass


def test_a_single_store_conversion_resumes_after_ctrl_c(source, tmp_path, monkeypatch):
    path, expected = source
    monkeypatch.setattr("storage.convert.single.BATCH_BYTES", 8 * 8 * 3 * 10)  # 10 per batch
    with pytest.raises(KeyboardInterrupt):
        convert(path, tmp_path / "out", "png", progress=StopAfter(2))
    with pytest.raises(StoreNotFoundError):  # nothing at the destination looks finished
        open_store(tmp_path / "out")
    with pytest.raises(IncompleteStoreError, match="convert"):
        verify_store(tmp_path / "out")
    with open_store(partial_path(tmp_path / "out")) as store:
        assert len(store) == 20  # two committed batches, kept for the next run
    progress = StopAfter(-1)
    result = convert(path, tmp_path / "out", "png", progress=progress)
    assert progress.resumed_at == 20 and result.built == ["out"]
    assert read_back_crcs(tmp_path / "out") == expected
    assert leftovers(tmp_path / "out") == []


def test_a_sharded_conversion_resumes_after_ctrl_c(source, dask_executor, tmp_path):
    path, expected = source
    with pytest.raises(KeyboardInterrupt):
        convert(path, tmp_path / "out", "lmdb", shards=6, executor=dask_executor,
                progress=StopAfter(2))
    assert not (tmp_path / "out" / INDEX).exists()
    result = convert(path, tmp_path / "out", "lmdb", shards=6, executor=dask_executor)
    assert len(result.skipped) >= 2 and len(result.built) + len(result.skipped) == 6
    assert read_back_crcs(tmp_path / "out") == expected and leftovers(tmp_path / "out") == []


class StopsAfterOne:
    """Builds the first shard, then stops as Ctrl-C would, leaving the other tasks unrun."""

    def run(self, tasks):
        self.left = tasks[1:]
        yield shard_module.build_shard(tasks[0])
        raise KeyboardInterrupt


def test_a_new_run_waits_for_a_task_the_stopped_run_left_at_work(source, tmp_path,
                                                                  monkeypatch):
    """A stopped driver's tasks run on where they are (a cluster, a shared executor). One
    that has moved its shard into place but not yet marked it must not see the next run
    remove the shard under it: the next run waits for it and keeps what it built."""
    path, expected = source
    out = tmp_path / "out"
    stopped = StopsAfterOne()
    with pytest.raises(KeyboardInterrupt):
        convert(path, out, "lmdb", shards=4, executor=stopped)
    straggler, renamed = stopped.left[0], threading.Event()
    write_marker = shard_module.write_marker

    def marked_late(destination, plan, record):
        if threading.current_thread().name == "straggler":
            renamed.set()  # the shard is in place, its marker still to come
            time.sleep(0.5)
        write_marker(destination, plan, record)

    monkeypatch.setattr(shard_module, "write_marker", marked_late)
    task = threading.Thread(target=shard_module.build_shard, args=(straggler,), name="straggler")
    task.start()
    assert renamed.wait(30)
    result = convert(path, out, "lmdb", shards=4, executor=SerialExecutor())
    task.join(30)
    assert straggler.plan.name in result.skipped and len(result.skipped) == 2
    assert read_back_crcs(out) == expected and leftovers(out) == []


def test_killed_driver_leaves_no_index_and_the_rerun_keeps_its_shards(dask_executor,
                                                                       tmp_path):
    source = tmp_path / "source"
    images, labels = make_store(source, 2400, shape=(32, 32, 3))
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "storage", "convert", str(source), str(out), "--format", "png",
         "--shards", "12", "--workers", "1", "--quiet"],
        cwd=REPOSITORY, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(markers(out)) < 2 if out.exists() else True:
            assert driver.poll() is None, driver.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard was committed within 60 s"
            time.sleep(0.01)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its local workers
        driver.wait(30)
    committed = markers(out)
    assert 2 <= len(committed) < 12 and not (out / INDEX).exists()
    with pytest.raises(IncompleteStoreError):
        open_store(out)
    result = convert(source, out, "png", shards=12, executor=dask_executor)
    assert result.skipped == committed
    assert sorted(result.skipped + result.built) == [f"shard-{n:05d}" for n in range(12)]
    assert leftovers(out) == [] and read_back_crcs(out) == sample_crcs(images, labels)
