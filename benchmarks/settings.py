"""What the suite measures: backends, store sizes and rounds, from the command line."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from storage.registry import BACKENDS, our_backends, reference_backends

FULL_SIZES = (10, 100, 1_000, 10_000, 100_000)
SMOKE_SIZES = (10, 100)
# The registry as the library ships it; formats a test session adds (the toy in
# tests/memory_backend.py) are measured only when named.
DEFAULT_BACKENDS = tuple(our_backends() + reference_backends())  # sharded: written by `convert`
# Options that ask pytest-benchmark to really measure; without any of them,
# plain `pytest` runs each benchmark once as a smoke test.
_MEASURING_OPTIONS = ("benchmark_only", "benchmark_enable", "benchmark_save",
                      "benchmark_autosave", "benchmark_json", "benchmark_compare")


@dataclass(frozen=True)
class SuiteSettings:
    backends: tuple[str, ...]
    sizes: tuple[int, ...]
    cifar: str | None
    measuring: bool


def add_options(parser) -> None:
    group = parser.getgroup("storage", "image storage benchmarks")
    group.addoption("--storage-backends", metavar="NAMES",
                    help=f"comma-separated backends to benchmark (default: all of {list(BACKENDS)})")
    group.addoption("--storage-n", metavar="SIZES",
                    help="comma-separated store sizes N (default: "
                         f"{','.join(map(str, FULL_SIZES))} when measuring, "
                         f"{','.join(map(str, SMOKE_SIZES))} for the smoke run)")
    group.addoption("--cifar", metavar="PATH",
                    help="CIFAR-10 python-version folder or .tar.gz to store "
                         "(default: $CIFAR10_DIR, else built-in generated images)")


def read_settings(config) -> SuiteSettings:
    measuring = any(config.getoption(name, None) for name in _MEASURING_OPTIONS)
    return SuiteSettings(
        backends=_parse_backends(config.getoption("storage_backends")),
        sizes=_parse_sizes(config.getoption("storage_n"), FULL_SIZES if measuring else SMOKE_SIZES),
        cifar=config.getoption("cifar"),
        measuring=measuring,
    )


def _parse_backends(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_BACKENDS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise pytest.UsageError(
            f"--storage-backends: unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    return names


def _parse_sizes(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if not text:
        return default
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise pytest.UsageError(
            f"--storage-n: expected comma-separated positive integers like 10,1000, got {text!r}")
    return sizes
