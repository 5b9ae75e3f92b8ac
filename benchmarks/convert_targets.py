"""Measure the conversion targets of the command line and sharded stores, in one run.

    python -m benchmarks.convert_targets --cifar DIR --work /tmp/convert-targets [--images 100000]

Writes CIFAR (train, then test, repeated) as an ImageFolder of PNG files under --work
(once; later runs reuse it) and reads it once (a warm page cache for every engine),
then times converting it into 16 LMDB shards on a LocalCluster(2), on a
multiprocessing.Pool(2) and in one process, a re-run over the finished output, a resume
after the driver is killed at half the shards, sharded random batches against one LMDB
store (taking turns, best of 3 per batch), and verify against read_many. Prints ratios.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from storage import open_store
from storage.cli.verify import verify_store
from storage.convert import convert
from storage.convert.engines import PoolExecutor, SerialExecutor, dask_executor

from storage.sources.cifar import load_cifar

SHARDS = 16
REPOSITORY = Path(__file__).resolve().parents[1]


def write_image_folder(cifar: str, root: Path, count: int) -> None:
    import imagecodecs

    done = root / "done"  # holds the count written: another --images writes the folder anew
    if done.exists() and done.read_text().strip() == str(count):
        return
    shutil.rmtree(root, ignore_errors=True)
    images, labels, _ = load_cifar(cifar, "all")
    for label in range(10):
        (root / f"class-{label}").mkdir(parents=True, exist_ok=True)
    for number in range(count):
        row = number % len(images)
        path = root / f"class-{labels[row]}" / f"{number:06d}.png"
        path.write_bytes(imagecodecs.png_encode(images[row]))
    done.write_text(f"{count}\n")


def warm(root: Path) -> None:
    """Read every file once: the engine timed first must not be the one that pays for a
    cold page cache (the folder may come from an earlier run)."""
    for path in root.rglob("*.png"):
        path.read_bytes()


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def random_batches(stores: dict, batches, rounds: int = 3) -> dict:
    """Seconds each store takes for ``batches``: the stores take turns batch by batch, and
    each batch counts its quickest of ``rounds``, so that a burst of load from other
    processes falls on both alike instead of on whichever store it met."""
    opened = {name: open_store(path) for name, path in stores.items()}
    try:
        best = {name: [float("inf")] * len(batches) for name in opened}
        for store in opened.values():
            store.read_many(batches[0])
        for _ in range(rounds):
            for number, batch in enumerate(batches):
                for name, store in opened.items():
                    seconds, _ = timed(lambda: store.read_many(batch))
                    best[name][number] = min(best[name][number], seconds)
        return {name: sum(seconds) for name, seconds in best.items()}
    finally:
        for store in opened.values():
            store.close()


def cli(*arguments) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "storage", *map(str, arguments)],
                            cwd=REPOSITORY, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def succeeded(process: subprocess.Popen) -> None:
    if process.wait() != 0:
        raise SystemExit(f"{process.args} failed with exit status {process.returncode}")


def workers_of(driver: subprocess.Popen) -> list:
    """The LocalCluster's worker processes: the driver's spawned children."""
    import psutil

    try:
        children = psutil.Process(driver.pid).children(recursive=True)
        return [child for child in children
                if "spawn_main" in " ".join(child.cmdline()) and
                "resource_tracker" not in " ".join(child.cmdline())]
    except psutil.Error:
        return []


def watched(arguments, destination: Path, after_shards: int | None = None, action=None):
    """Run the CLI; call ``action(driver)`` once that many shards are committed.

    Returns (wall seconds, peak RSS of any one worker process in bytes).
    """
    import psutil

    started = time.perf_counter()
    driver = cli(*arguments)
    peak = 0
    while driver.poll() is None:
        for worker in workers_of(driver):
            try:
                peak = max(peak, worker.memory_info().rss)
            except psutil.Error:
                pass
        if action and len(list(destination.glob("shard-*.done"))) >= after_shards:
            action(driver)
            action = None
        time.sleep(0.05)
    wall = time.perf_counter() - started
    return wall, peak, driver.returncode


def kill_driver(driver) -> None:
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its local workers


def kill_one_worker(driver) -> None:
    workers = workers_of(driver)
    if not workers:
        raise SystemExit("found no worker process to kill")
    workers[0].kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cifar", required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--images", type=int, default=100_000)
    options = parser.parse_args()
    folder, outputs = options.work / "png-folder", options.work / "outputs"
    seconds, _ = timed(lambda: write_image_folder(options.cifar, folder, options.images))
    print(f"ImageFolder of {options.images:,} PNG files ready ({seconds:.1f} s)")
    warm(folder)
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir(parents=True)
    results = {}

    with dask_executor(workers=2) as executor:
        results["dask"], _ = timed(lambda: convert(folder, outputs / "dask", "lmdb",
                                                   shards=SHARDS, executor=executor))
    results["pool"], _ = timed(lambda: convert(folder, outputs / "pool", "lmdb", shards=SHARDS,
                                               executor=PoolExecutor(2)))
    results["serial"], _ = timed(lambda: convert(folder, outputs / "serial", "lmdb",
                                                 shards=SHARDS, executor=SerialExecutor()))
    command = ("convert", folder, outputs / "dask", "--format", "lmdb", "--shards", SHARDS,
               "--workers", "2", "--quiet")
    results["rerun"], _ = timed(lambda: succeeded(cli(*command)))

    def run(name, after=None, action=None):
        return watched(("convert", folder, outputs / name) + command[3:], outputs / name,
                       after, action)

    results["full_cli"], peak_rss, _ = run("full")
    results["worker_killed"], _, status = run("worker-killed", SHARDS // 2, kill_one_worker)
    assert status == 0, "the run with a killed worker failed"
    killed_after, _, _ = run("resumed", SHARDS // 2, kill_driver)
    committed = len(list((outputs / "resumed").glob("shard-*.done")))
    results["resume"], _, status = run("resumed")
    assert status == 0, "the resumed run failed"

    # Reads: random batches of 256 ids, sharded against one store of the same format.
    convert(outputs / "serial", outputs / "single", "lmdb")
    convert(outputs / "serial", outputs / "single-hdf5", "hdf5")
    rng = np.random.default_rng(0)
    batches = [rng.choice(options.images, 256, replace=False) for _ in range(200)]
    reads = random_batches({name: outputs / name for name in ("dask", "single")}, batches)
    verify = {}
    for name in ("dask", "single", "single-hdf5"):
        with open_store(outputs / name) as store:
            store.read_many(store.ids())  # warm: both read from the page cache
            read_all = min(timed(lambda: store.read_many(store.ids()))[0] for _ in range(2))
        verify[name] = (min(timed(lambda: verify_store(outputs / name))[0] for _ in range(2)),
                        read_all)

    print("\n| measure | result | target |\n|---|---|---|")
    print(f"| convert {options.images:,} PNG files -> {SHARDS} LMDB shards: LocalCluster(2) "
          f"{results['dask']:.1f} s / one process {results['serial']:.1f} s | "
          f"{results['dask'] / results['serial']:.2f}x | <= 0.7x |")
    print(f"| Dask {results['dask']:.1f} s / multiprocessing.Pool(2) {results['pool']:.1f} s | "
          f"{results['dask'] / results['pool']:.2f}x | <= 1.2x |")
    print(f"| re-run over the complete output (CLI, wall) | {results['rerun']:.2f} s | < 2 s |")
    bound = (SHARDS - committed) / SHARDS * results["full_cli"] + 2
    print(f"| resume after the driver was killed at {committed} of {SHARDS} shards "
          f"({killed_after:.1f} s in); full CLI run {results['full_cli']:.1f} s | "
          f"{results['resume']:.1f} s | <= {bound:.1f} s |")
    print(f"| worker SIGKILL at {SHARDS // 2} of {SHARDS} shards: {results['worker_killed']:.1f} s"
          f" against {results['full_cli']:.1f} s | {results['worker_killed'] - results['full_cli']:+.1f}"
          f" s | <= one shard's task time ({results['full_cli'] * 2 / SHARDS:.1f} s) + 3 s |")
    shard_bytes = options.images * 3072 / SHARDS
    print(f"| peak worker RSS (shard {shard_bytes / 1e6:.0f} MB) | {peak_rss / 1e6:.0f} MB | "
          f"<= {(2 * shard_bytes + 200e6) / 1e6:.0f} MB |")
    print(f"| random batches of 256 (turn about, best of 3): sharded {reads['dask']:.3f} s / "
          f"one store {reads['single']:.3f} s (read throughput ratio) | "
          f"{reads['single'] / reads['dask']:.2f}x | >= 0.8x |")
    for name, (seconds, read_all) in verify.items():
        print(f"| verify {name}: {seconds:.2f} s; read_many of every id {read_all:.2f} s "
              f"(throughput ratio) | {read_all / seconds:.2f}x | >= 0.5x |")


if __name__ == "__main__":
    main()
