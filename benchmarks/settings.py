"""What the suite measures: backends, store sizes and rounds, from the command line."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.registry import BACKENDS, backend_class, our_backends, reference_backends

FULL_SIZES = (10, 100, 1_000, 10_000, 100_000)
SMOKE_SIZES = (10, 100)
# Image sides in pixels (square, RGB): CIFAR's 32 and a photograph's 256 by default.
FULL_SIDES = (32, 256)
SMOKE_SIDES = (32,)
# A store of N images is measured only while N x image bytes stays under this, so
# 256 px runs to N = 1,000 and 512 px to N = 100; raise it for the wider sweep.
DEFAULT_MAX_BYTES = 400_000_000
# Encoded images are measured up to this N: they are the cheap part of the matrix.
ENCODED_MAX_N = 10_000
# What the decode benchmark compares: storage.decode's helper, and Pillow's loop.
DECODERS = ("imagecodecs", "pillow")
# The registry as the library ships it; formats a test session adds (the toy in
# tests/memory_backend.py) are measured only when named.
DEFAULT_BACKENDS = tuple(our_backends() + reference_backends())  # sharded: written by `convert`
SHARDED_PREFIX = "sharded-"  # an access-pattern row of a format's sharded store
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
    sides: tuple[int, ...] = SMOKE_SIDES
    max_bytes: int = DEFAULT_MAX_BYTES
    photographs: bool = False
    store_cache: Path | None = None
    sides_given: bool = False  # --storage-size named the sides: every operation at each
    shards: int | None = None  # --storage-sharded: access patterns on sharded stores too

    def combinations(self, *, encoded: bool = False,
                     every_side: bool = True) -> list[tuple[int, int]]:
        """(side, N) pairs to measure: every N at each side, up to the byte cap; for
        encoded images up to ENCODED_MAX_N too. An operation not measured at every side
        (benchmarks/operations.py) runs at the smallest only, unless the sides were named."""
        sides = self.sides if every_side or self.sides_given else (min(self.sides),)
        return [(side, count) for side in sides for count in self.sizes
                if (side == min(sides) or count * side * side * 3 <= self.max_bytes)
                and (not encoded or count <= ENCODED_MAX_N)]

    def array_backends(self) -> tuple[str, ...]:
        """The chosen backends that hold pixel arrays (raw-blob holds bytes only)."""
        return tuple(name for name in self.backends if backend_class(name).capabilities.arrays)

    def access_backends(self) -> tuple[str, ...]:
        """The array backends, plus with --storage-sharded a ``sharded-<format>`` row for
        each of ours: the same images in K shards of that format, read as one store."""
        sharded = tuple(f"{SHARDED_PREFIX}{name}" for name in self.array_backends()
                        if name in our_backends()) if self.shards else ()
        return self.array_backends() + sharded

    def encoded_backends(self) -> tuple[str, ...]:
        """The chosen backends that hold JPEG bytes."""
        return tuple(name for name in self.backends
                     if "jpeg" in backend_class(name).capabilities.encodings)


def add_options(parser) -> None:
    group = parser.getgroup("storage", "image storage benchmarks")
    group.addoption("--storage-backends", metavar="NAMES",
                    help=f"comma-separated backends to benchmark (default: all of {list(BACKENDS)})")
    group.addoption("--storage-n", metavar="SIZES",
                    help="comma-separated store sizes N (default: "
                         f"{','.join(map(str, FULL_SIZES))} when measuring, "
                         f"{','.join(map(str, SMOKE_SIZES))} for the smoke run)")
    group.addoption("--storage-size", metavar="SIDES",
                    help="comma-separated image sides in pixels (default: "
                         f"{','.join(map(str, FULL_SIDES))} when measuring, "
                         f"{','.join(map(str, SMOKE_SIDES))} for the smoke run); "
                         "32 px uses CIFAR when given, other sides generated images")
    group.addoption("--storage-max-bytes", metavar="BYTES",
                    help="measure a side at N only while N x image bytes stays under this "
                         f"(default {DEFAULT_MAX_BYTES:_}; the smallest side always runs every N)")
    group.addoption("--photographs", action="store_true",
                    help="at sides above 32 px, store crops of real photographs "
                         "(storage.sources.photographs) instead of generated images")
    group.addoption("--storage-store-cache", metavar="DIR",
                    help="keep the stores the read benchmarks use in DIR and reuse them in "
                         "later runs (the gate measures a revision many times); use one DIR "
                         "per revision and data set: its stores are never rebuilt")
    group.addoption("--cifar", metavar="PATH",
                    help="CIFAR-10 python-version folder or .tar.gz to store "
                         "(default: $CIFAR10_DIR, else built-in generated images)")
    group.addoption("--storage-parallel", action="store_true",
                    help="also run the parallel readers benchmark (K worker processes; "
                         "minutes at large N, so off by default)")
    group.addoption("--storage-sharded", metavar="K", type=int,
                    help="also read the access patterns from a store of each chosen format "
                         "split into K shards (rows sharded-<format>; built in this process "
                         "by `convert`, so off by default)")
    group.addoption("--storage-cold", action="store_true",
                    help="also run the cold-cache benchmarks (stores evicted from the page "
                         "cache; flushes the disk, so off by default)")


def read_settings(config) -> SuiteSettings:
    measuring = any(config.getoption(name, None) for name in _MEASURING_OPTIONS)
    return SuiteSettings(
        backends=_parse_backends(config.getoption("storage_backends")),
        sizes=_parse_sizes(config.getoption("storage_n"), FULL_SIZES if measuring else SMOKE_SIZES,
                           "--storage-n"),
        cifar=config.getoption("cifar"),
        measuring=measuring,
        sides=_parse_sizes(config.getoption("storage_size"),
                           FULL_SIDES if measuring else SMOKE_SIDES, "--storage-size"),
        max_bytes=_parse_sizes(config.getoption("storage_max_bytes"),
                               (DEFAULT_MAX_BYTES,), "--storage-max-bytes")[0],
        photographs=bool(config.getoption("photographs")),
        store_cache=Path(config.getoption("storage_store_cache")).resolve()
        if config.getoption("storage_store_cache") else None,
        sides_given=bool(config.getoption("storage_size")),
        shards=_parse_shards(config.getoption("storage_sharded")),
    )


def _parse_shards(shards: int | None) -> int | None:
    if shards is not None and shards < 1:
        raise pytest.UsageError(f"--storage-sharded: {shards} shards; give a count of 1 or more")
    return shards


def _parse_backends(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_BACKENDS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise pytest.UsageError(
            f"--storage-backends: unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    return names


def _parse_sizes(text: str | None, default: tuple[int, ...], option: str) -> tuple[int, ...]:
    if not text:
        return default
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise pytest.UsageError(
            f"{option}: expected comma-separated positive integers like 10,1000, got {text!r}")
    return sizes
