"""Suite-wide options and fixtures: which backends and sizes to measure, on which data."""
from __future__ import annotations

import pytest

from benchmarks.settings import add_options, read_settings
from storage.datasets import load_dataset


def pytest_addoption(parser):
    add_options(parser)


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config):
    settings = read_settings(config)
    config.storage_settings = settings
    if not settings.measuring and not config.getoption("benchmark_disable", False):
        # Plain `pytest`: every benchmark runs once, as a smoke test of the suite.
        config.option.benchmark_disable = True


def pytest_generate_tests(metafunc):
    settings = metafunc.config.storage_settings
    if "storage_backend" in metafunc.fixturenames:
        metafunc.parametrize("storage_backend", settings.backends, ids=str)
    if "storage_n" in metafunc.fixturenames:
        metafunc.parametrize("storage_n", settings.sizes, ids=lambda n: f"N={n}")


@pytest.fixture(scope="session")
def dataset(pytestconfig):
    """The images to store: --cifar, $CIFAR10_DIR, or the generated default."""
    settings = pytestconfig.storage_settings
    return load_dataset(settings.cifar, count=max(settings.sizes))
