"""Backend names mapped to ``module:Class``; modules are imported only when used.

Adding a backend is one module and one line here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from storage.errors import UnknownBackendError


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:Class"
    reference: bool = False  # a baseline to measure against, never recommended
    classic: str | None = None  # the reference reproducing the classic code for this format
    container: bool = False  # holds stores of another backend; read-only, written by convert

    def load(self):
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)


_ENTRIES = [
    BackendEntry("png", "storage.formats.png:PngBackend", classic="classic-png"),
    BackendEntry("lmdb", "storage.formats.lmdb:LmdbBackend", classic="classic-lmdb"),
    BackendEntry("hdf5", "storage.formats.hdf5:Hdf5Backend", classic="classic-hdf5"),
    BackendEntry("arrow", "storage.formats.arrow:ArrowBackend"),
    BackendEntry("parquet", "storage.formats.parquet:ParquetBackend"),
    BackendEntry("zarr", "storage.formats.zarr:ZarrBackend"),
    BackendEntry("sqlite", "storage.formats.sqlite:SqliteBackend"),
    BackendEntry("leveldb", "storage.formats.leveldb:LeveldbBackend"),
    BackendEntry("tar", "storage.formats.tar:TarBackend"),
    # References: what the classic code does, and what moving the bytes costs.
    BackendEntry("classic-png", "storage.references.classic_png:ClassicPngBackend", reference=True),
    BackendEntry("classic-lmdb", "storage.references.classic_lmdb:ClassicLmdbBackend", reference=True),
    BackendEntry("classic-hdf5", "storage.references.classic_hdf5:ClassicHdf5Backend", reference=True),
    BackendEntry("raw", "storage.references.raw:RawBackend", reference=True),
    BackendEntry("raw-blob", "storage.references.raw_blob:RawBlobBackend", reference=True),
    # Shards of one of the formats above, read as one store (``python -m storage convert``).
    BackendEntry("sharded", "storage.sharded.backend:ShardedBackend", container=True),
]

BACKENDS: dict[str, BackendEntry] = {entry.name: entry for entry in _ENTRIES}


def our_backends() -> list[str]:
    """The backends this project recommends (references excluded), in registry order."""
    return [name for name, entry in BACKENDS.items()
            if not (entry.reference or entry.container)]


def reference_backends() -> list[str]:
    return [name for name, entry in BACKENDS.items() if entry.reference]


def container_backends() -> list[str]:
    """Backends that hold stores of another backend (read-only; ``storage.convert`` writes)."""
    return [name for name, entry in BACKENDS.items() if entry.container]


def backend_class(name: str):
    try:
        entry = BACKENDS[name]
    except (KeyError, TypeError):
        raise UnknownBackendError(
            f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}"
        ) from None
    return entry.load()
