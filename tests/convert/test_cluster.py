"""The CLI on a scheduler and two workers started as separate processes on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.sharded.index import INDEX, is_shard_name
from tests.convert.conftest import leftovers, make_store, read_back_crcs, sample_crcs

pytestmark = pytest.mark.timeout(120)
REPOSITORY = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, [worker processes]), one cluster for the module; ended afterwards.

    Either test may run first: each needs one live worker, the kill test kills one of two.
    """
    tmp_path = tmp_path_factory.mktemp("cluster")
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    scheduler_file = tmp_path / "scheduler.json"
    processes = [subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]
        workers = [subprocess.Popen(
            [DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
             "--no-dashboard", "--local-directory", str(tmp_path / f"worker-{number}")],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for number in range(2)]
        processes += workers
        _wait_for_workers(address, 2)
        yield address, workers
    finally:
        for process in processes:
            process.kill()
            process.wait(30)


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        client.wait_for_workers(count, timeout=30)


def test_a_worker_killed_mid_run_loses_nothing(cluster, tmp_path):
    address, workers = cluster
    assert all(worker.poll() is None for worker in workers)
    source, out = tmp_path / "source", tmp_path / "out"
    images, labels = make_store(source, 2400, shape=(32, 32, 3))
    driver = subprocess.Popen(
        [sys.executable, "-m", "storage", "convert", str(source), str(out), "--format", "png",
         "--shards", "12", "--scheduler", address],
        cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(out.glob("shard-*.done"))) < 2 if out.exists() else True:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no shard was committed within 60 s"
        time.sleep(0.01)
    assert not (out / INDEX).exists()  # killed mid-run, not after it
    workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = driver.communicate(timeout=90)
    assert driver.returncode == 0, stderr.decode()
    assert stderr == b"", stderr.decode()  # not a terminal: no progress bar
    shards = sorted(entry.name for entry in out.iterdir() if is_shard_name(entry.name))
    assert shards == [f"shard-{n:05d}" for n in range(12)]
    assert len(list(out.glob("shard-*.done"))) == 12 and leftovers(out) == []
    assert read_back_crcs(out) == sample_crcs(images, labels)


def test_the_scheduler_comes_from_the_environment(cluster, tmp_path):
    address, _ = cluster
    source = tmp_path / "source"
    images, labels = make_store(source, 30)
    finished = subprocess.run(
        [sys.executable, "-m", "storage", "convert", str(source), str(tmp_path / "out"),
         "--format", "hdf5", "--shards", "3"],
        cwd=REPOSITORY, capture_output=True, timeout=60,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": address})
    assert finished.returncode == 0, finished.stderr.decode()
    assert read_back_crcs(tmp_path / "out") == sample_crcs(images, labels)
