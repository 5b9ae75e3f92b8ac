"""Suite-wide options and fixtures: which backends and sizes to measure, on which data."""
from __future__ import annotations

import pytest

from benchmarks.operations import BY_TEST
from benchmarks.ratios import add_ratios
from benchmarks.settings import DECODERS, add_options, read_settings
from benchmarks.datasets import encode_jpeg, load_dataset
from tests.memory_backend import register as register_toy_format


# Wider sweeps that run only when their option is given: marker -> option.
_OPT_IN = {"training_spawn": "training_spawn", "storage_parallel": "storage_parallel",
           "storage_cold": "storage_cold"}


def pytest_addoption(parser):
    add_options(parser)
    parser.addoption("--training-spawn", action="store_true",
                     help="also read every format through 1 and 4 spawned workers "
                          "(tests/test_training.py; 2 always run)")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config):
    register_toy_format()  # measured only when named: --storage-backends memory
    settings = read_settings(config)
    config.storage_settings = settings
    if not settings.measuring and not config.getoption("benchmark_disable", False):
        # Plain `pytest`: every benchmark runs once, as a smoke test of the suite.
        config.option.benchmark_disable = True


def pytest_collection_modifyitems(config, items):
    """With --benchmark-only, the tests are deselected rather than reported as skipped;
    so are the wider sweeps whose option is not given."""
    for marker, option in _OPT_IN.items():
        if not config.getoption(option, False):
            _deselect(config, items, [item for item in items if item.get_closest_marker(marker)])
    if not config.getoption("benchmark_only", False):
        return
    _deselect(config, items, [item for item in items
                              if "benchmark" not in getattr(item, "fixturenames", ())])


def _deselect(config, items, dropped) -> None:
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        dropped = set(dropped)
        items[:] = [item for item in items if item not in dropped]


def pytest_generate_tests(metafunc):
    settings = metafunc.config.storage_settings
    if "storage_backend" in metafunc.fixturenames:
        metafunc.parametrize("storage_backend", settings.array_backends(), ids=str)
    if "access_backend" in metafunc.fixturenames:
        metafunc.parametrize("access_backend", settings.access_backends(), ids=str)
    if "encoded_backend" in metafunc.fixturenames:
        metafunc.parametrize("encoded_backend", settings.encoded_backends(), ids=str)
    if "decoder" in metafunc.fixturenames:
        metafunc.parametrize("decoder", DECODERS, ids=str)
    names = metafunc.fixturenames
    if "storage_side" in names and "storage_n" in names:
        # One axis, so that a side is measured only at the N its byte cap allows.
        encoded = "encoded_backend" in names or "decoder" in names
        operation = BY_TEST.get(metafunc.function.__name__)
        combinations = settings.combinations(
            encoded=encoded, every_side=operation is None or operation.every_side)
        metafunc.parametrize("storage_side, storage_n", combinations,
                             ids=[f"{side}px-N={count}" for side, count in combinations])
    elif "storage_n" in names:
        metafunc.parametrize("storage_n", settings.sizes, ids=lambda n: f"N={n}")


@pytest.fixture(scope="session")
def datasets(pytestconfig):
    """Images to store per side, loaded once each when first asked for."""
    settings = pytestconfig.storage_settings
    loaded = {}

    def dataset_for(side: int):
        if side not in loaded:
            largest = max(count for each, count in settings.combinations() if each == side)
            loaded[side] = load_dataset(settings.cifar, count=largest, side=side,
                                        photographs=settings.photographs)
        return loaded[side]

    return dataset_for


@pytest.fixture(scope="session")
def encoded_datasets(datasets, pytestconfig):
    """The images of each side as JPEG quality 90, encoded once per run when first asked for."""
    settings = pytestconfig.storage_settings
    encoded = {}

    def encoded_for(side: int):
        if side not in encoded:
            largest = max(count for each, count in settings.combinations(encoded=True)
                          if each == side)
            encoded[side] = encode_jpeg(datasets(side), largest)
        return encoded[side]

    return encoded_for


@pytest.fixture
def encoded_dataset(encoded_datasets, storage_side):
    """This side's images as JPEG bytes (quality 90), for the encoded-image benchmarks."""
    return encoded_datasets(storage_side)


@pytest.fixture
def dataset(datasets, storage_side):
    """The images to store at this side: --cifar, $CIFAR10_DIR, or the generated default."""
    return datasets(storage_side)


def _measured(config) -> list:
    session = getattr(config, "_benchmarksession", None)
    return [bench for bench in getattr(session, "benchmarks", []) if bench]


def pytest_benchmark_update_json(config, benchmarks, output_json):
    add_ratios([{"group": bench["group"], "extra_info": bench["extra_info"],
                 "median": bench["stats"]["median"]} for bench in output_json["benchmarks"]])


def pytest_terminal_summary(terminalreporter, config):
    results = [{"group": bench.group, "extra_info": bench.extra_info,
                "median": bench.stats.median, "name": bench.name} for bench in _measured(config)]
    add_ratios(results)
    rows = [result for result in results
            if "vs_raw" in result["extra_info"] or "vs_classic" in result["extra_info"]]
    if not rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section("time relative to the references measured in this run")
    write(f"{'benchmark':<48} {'vs raw':>8} {'speed-up over classic':>22}")
    for result in sorted(rows, key=lambda result: (result["group"], result["name"])):
        info = result["extra_info"]
        vs_raw = f"{info['vs_raw']:.2f}x" if "vs_raw" in info else "-"
        speedup = f"{1 / info['vs_classic']:.2f}x" if "vs_classic" in info else "-"
        write(f"{result['name']:<48} {vs_raw:>8} {speedup:>22}")
