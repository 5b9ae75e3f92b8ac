"""Image datasets in PNG files, LMDB, HDF5, Arrow, Parquet, Zarr, SQLite, LevelDB or tar shards,
behind one interface.

>>> with open_store("cifar.lmdb", "lmdb", mode="w") as store:
...     store.write_many(images, labels)
>>> with open_store("cifar.lmdb") as store:          # backend read from the store
...     images, labels = store.read_many(range(1000))
>>> with open_store("photos", "lmdb", mode="w", encoding="jpeg") as store:
...     store.write_many(jpeg_bytes_list, labels)   # bytes in, the same bytes out
"""
from storage.core import validation
from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts
from storage.core.marker import backend_of, read_marker
from storage.errors import *  # noqa: F403 - the hierarchy is part of the API
from storage.errors import StoreError
from storage.registry import BACKENDS, backend_class, our_backends, reference_backends


def open_store(path, backend: str | None = None, mode: str = "r", **options) -> Backend:
    """Open the store at ``path``; ``backend`` may be left out for an existing store.

    ``encoding="jpeg"`` or ``"png"`` creates a store of encoded images (see ``Backend``);
    an existing store's encoding is read from its marker.
    """
    path = validation.check_path(path)
    if backend is None:
        marker = read_marker(path)
        return backend_class(marker["backend"]).open_with_marker(marker, path, mode, **options)
    return backend_class(backend)(path, mode, **options)


__all__ = ["Backend", "BACKENDS", "Capabilities", "FormatFacts", "StoreError", "backend_of", "open_store",
           "our_backends", "reference_backends"]
