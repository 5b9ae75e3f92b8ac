"""Load CIFAR-10 / CIFAR-100 from the official python-version download, safely.

The batches are pickles, and unpickling runs whatever code a file names. The
loader therefore uses an unpickler that resolves only the numpy names these
files reference; any other global is refused before anything runs. Accepted
sources: the extracted directory (``cifar-10-batches-py`` or
``cifar-100-python``), its parent, or the downloaded ``.tar.gz`` (read in
place, nothing extracted).
"""
from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.errors import DatasetError, UnsafePickleError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
SIDE = 32
PIXELS = 3 * SIDE * SIDE


@dataclass(frozen=True)
class Layout:
    directory: str  # name inside the tar.gz and of the extracted folder
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: bytes
    classes: int


LAYOUTS = {
    "cifar-10": Layout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                       ("test_batch",), b"labels", 10),
    "cifar-100": Layout("cifar-100-python", ("train",), ("test",), b"fine_labels", 100),
}
SPLITS = ("train", "test", "all")


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: a CIFAR batch references only numpy "
                "arrays, so this file is not one (nothing in it was run)") from None


def load_cifar(source, split: str = "train") -> tuple[np.ndarray, np.ndarray, str]:
    """Images (N, 32, 32, 3) uint8, labels (N,) int64 and the data set's name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    source = Path(source)
    if not source.exists():
        raise DatasetError(
            f"no CIFAR data at '{source}'; pass the extracted cifar-10-batches-py directory "
            "or cifar-10-python.tar.gz from the official python-version download")
    reader = _TarReader(source) if source.is_file() else _DirectoryReader(source)
    with reader:
        kind, layout = reader.layout()
        names = {"train": layout.train, "test": layout.test,
                 "all": layout.train + layout.test}[split]
        batches = [_parse_batch(reader.read(name), name, layout) for name in names]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return images, labels, f"{kind} {split}"


def _parse_batch(raw: bytes, name: str, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _AllowListUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as error:  # truncated or malformed: any unpickling failure
        raise DatasetError(f"CIFAR batch '{name}' is not a readable pickle ({error!r})") from error
    if not isinstance(batch, dict) or b"data" not in batch or layout.label_key not in batch:
        raise DatasetError(
            f"CIFAR batch '{name}' lacks {b'data'!r} or {layout.label_key!r}; "
            "is this the python-version download?")
    data, labels = batch[b"data"], batch[layout.label_key]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == PIXELS):
        raise DatasetError(
            f"CIFAR batch '{name}' holds data of {getattr(data, 'dtype', type(data))} "
            f"{getattr(data, 'shape', '')}, expected uint8 (N, {PIXELS})")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as error:
        raise DatasetError(f"CIFAR batch '{name}' has non-integer labels") from error
    if labels.shape != (len(data),) or (len(labels) and not
                                        (0 <= labels.min() and labels.max() < layout.classes)):
        raise DatasetError(
            f"CIFAR batch '{name}' has {labels.shape} labels for {len(data)} images, "
            f"or labels outside 0..{layout.classes - 1}")
    # Rows are channel-planar (R plane, G plane, B plane): one reshape and transpose.
    images = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


class _DirectoryReader:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def layout(self) -> tuple[str, Layout]:
        for kind, layout in LAYOUTS.items():
            for folder in (self.path, self.path / layout.directory):
                if all((folder / name).is_file() for name in layout.train + layout.test):
                    self.path = folder
                    return kind, layout
        raise DatasetError(
            f"'{self.path}' holds neither CIFAR-10 (data_batch_1..5, test_batch) nor "
            "CIFAR-100 (train, test) batches; point at the extracted python-version folder")

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


class _TarReader:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.archive = tarfile.open(path, "r:*")
            self.members = {member.name: member for member in self.archive.getmembers()
                            if member.isfile()}
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DatasetError(f"'{path}' is not a readable tar archive ({error})") from error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.archive.close()

    def layout(self) -> tuple[str, Layout]:
        for kind, layout in LAYOUTS.items():
            if all(f"{layout.directory}/{name}" in self.members
                   for name in layout.train + layout.test):
                self.prefix = layout.directory
                return kind, layout
        raise DatasetError(
            f"'{self.path}' is not cifar-10-python.tar.gz or cifar-100-python.tar.gz: "
            "its batches are missing")

    def read(self, name: str) -> bytes:
        try:
            return self.archive.extractfile(self.members[f"{self.prefix}/{name}"]).read()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DatasetError(f"cannot read '{name}' from '{self.path}' ({error})") from error
