"""What ``convert`` reads: CIFAR batches, an ImageFolder of image files, or a store.

A source knows its count, image shape and a hash of its manifest (what it holds), and
hands out ``part(start, stop)``: a small picklable piece that a worker reads in batches,
so no process ever holds a whole ImageFolder or store. A part yields pixel arrays, or with
``raw=True`` the encoded bytes of an encoded source (its ``info.encoding``) unchanged. CIFAR batches are pickles that
can only be loaded whole, so each worker process loads the split once and keeps it.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage import decode, open_store
from storage.errors import DatasetError, StoreError

from storage.sources.cifar import load_cifar

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SUFFIX_ENCODINGS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
CLASSES_FILE = "classes.json"  # beside a converted store: label -> ImageFolder class name


@dataclass(frozen=True)
class SourceInfo:
    description: str
    count: int
    image_shape: tuple[int, int, int]
    manifest_hash: str
    classes: tuple[str, ...] | None  # ImageFolder class names, in label order
    encoding: str | None = None  # the encoding of the bytes it holds; None: pixel arrays
    why_not_encoded: str | None = None  # why an image source has no single encoding


def open_source(path, split: str = "train"):
    """The source at ``path``: a store of this library, CIFAR batches, or an ImageFolder."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no source at '{path}'; pass a CIFAR folder or .tar.gz, an "
                           "ImageFolder (class_name/*.png|jpg) or a store of this library")
    if (path / "store.json").exists():
        return StoreSource(path)
    if path.is_file() or _looks_like_cifar(path):
        return CifarSource(path, split)
    return ImageFolderSource(path)


def _looks_like_cifar(path: Path) -> bool:
    names = {"data_batch_1", "train", "cifar-10-batches-py", "cifar-100-python"}
    return any((path / name).exists() for name in names)


def _sha256(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part).encode())
    return digest.hexdigest()


# ---- CIFAR ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cifar(path: str, split: str):
    return load_cifar(path, split)


class CifarSource:
    def __init__(self, path: Path, split: str):
        self.path, self.split = str(Path(path).resolve()), split
        images, labels, name = _cifar(self.path, split)
        # Content, not file dates: the same data converted twice has the same hash.
        digest = _sha256(name, zlib.crc32(images.data), zlib.crc32(labels.astype("<i8").data))
        self.info = SourceInfo(f"{name} from {Path(path).name}", len(images),
                               tuple(images.shape[1:]), digest, None)

    def part(self, start: int, stop: int) -> "CifarPart":
        return CifarPart(self.path, self.split, start, stop)


@dataclass(frozen=True)
class CifarPart:
    path: str
    split: str
    start: int
    stop: int

    def batches(self, size: int, raw: bool = False):
        images, labels, _ = _cifar(self.path, self.split)  # pixels only: never raw
        for first in range(self.start, self.stop, size):
            last = min(first + size, self.stop)
            yield images[first:last], labels[first:last]


# ---- ImageFolder ------------------------------------------------------------------------------
class ImageFolderSource:
    """``root/class_name/*.png|jpg``; labels number the class folders in sorted order."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        classes = sorted(entry.name for entry in os.scandir(self.root)
                         if entry.is_dir() and not entry.name.startswith("."))
        files, labels, manifest = [], [], hashlib.sha256()
        for label, name in enumerate(classes):
            # Names only, no stat per file: a re-run over a million files stays quick. A
            # file rewritten in place under the same name is not noticed (use --no-resume).
            names = sorted(entry.name for entry in os.scandir(self.root / name)
                           if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file())
            files += [f"{name}/{file}" for file in names]
            labels += [label] * len(names)
            manifest.update(json.dumps([name, names]).encode())
        if not files:
            raise DatasetError(
                f"'{self.root}' holds no images in the ImageFolder layout "
                f"(class_name/*{'|'.join(IMAGE_SUFFIXES)}); point at the folder above the classes")
        self.files, self.labels = files, np.array(labels, np.int64)
        shape = decode_image(self.root / files[0]).shape
        encodings = sorted({_SUFFIX_ENCODINGS[Path(name).suffix.lower()] for name in files})
        mixed = len(encodings) > 1
        self.info = SourceInfo(f"ImageFolder {self.root.name} ({len(classes)} classes)",
                               len(files), shape, manifest.hexdigest(), tuple(classes),
                               encoding=None if mixed else encodings[0],
                               why_not_encoded="holds both PNG and JPEG files" if mixed else None)

    def part(self, start: int, stop: int) -> "ImageFolderPart":
        return ImageFolderPart(str(self.root), tuple(self.files[start:stop]),
                               self.labels[start:stop], self.info.image_shape,
                               self.info.encoding)


@dataclass(frozen=True)
class ImageFolderPart:
    root: str
    files: tuple[str, ...]
    labels: np.ndarray
    image_shape: tuple[int, int, int]
    encoding: str | None = None  # of every file, when they share one

    def batches(self, size: int, raw: bool = False):
        for first in range(0, len(self.files), size):
            names = self.files[first:first + size]
            if raw:
                yield [self._encoded_file(name) for name in names], self.labels[first:first + size]
                continue
            images = np.empty((len(names), *self.image_shape), np.uint8)
            for row, name in enumerate(names):
                image = decode_image(Path(self.root) / name)
                if image.shape != self.image_shape:
                    raise DatasetError(
                        f"'{name}' in '{self.root}' is {image.shape}, the first image "
                        f"{self.image_shape}; resize the images to one size before converting")
                images[row] = image
            yield images, self.labels[first:first + size]

    def _encoded_file(self, name: str) -> bytes:
        """The file's bytes, checked to be the folder's encoding (a .png may hold a JPEG)."""
        path = Path(self.root) / name
        data = read_image_file(path)
        try:
            found = decode.encoding_of(data)
        except StoreError:
            found = None
        if found != self.encoding:
            raise DatasetError(f"'{path}' is not a {self.encoding} file although its name says "
                               "so; fix or remove it, or pass --encoded jpeg or png to re-encode")
        return data


def read_image_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read the image '{path}' ({error}); check the file, then "
                           "convert again") from error


def decode_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; grey, palette and alpha images are converted."""
    data = read_image_file(path)
    try:
        pixels = decode.decode_image(data)  # libpng / libjpeg-turbo: the common case, fast
    except StoreError:
        pixels = None
    if pixels is not None and pixels.shape[-1] == 3:
        return pixels
    return _decode_with_pillow(path, data)


def _decode_with_pillow(path: Path, data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot read the image '{path}' ({error}); remove or replace it, "
                           "then convert again") from error


# ---- a store of this library ----------------------------------------------------------------
class StoreSource:
    """Any store; the destination numbers its images 0..N-1 in the source's id order."""

    def __init__(self, path: Path):
        self.path = str(Path(path).resolve())
        with open_store(self.path) as store:
            ids, shape, backend = store.ids(), store.image_shape, type(store).name
            encoding = store.encoding
            if encoding and len(ids):  # encoded images record no shape: the first one's
                shape = decode.decode_image(store.read_one(int(ids[0]))[0]).shape
        self.ids = ids
        marker = (Path(self.path) / "store.json").read_bytes()
        self.info = SourceInfo(f"{backend} store {Path(self.path).name}", len(ids),
                               tuple(shape or (0, 0, 0)),
                               _sha256(backend, ids.astype("<i8").tobytes(), marker), None,
                               encoding=encoding)

    def part(self, start: int, stop: int) -> "StorePart":
        return StorePart(self.path, self.ids[start:stop])


@dataclass(frozen=True)
class StorePart:
    path: str
    ids: np.ndarray

    def batches(self, size: int, raw: bool = False):
        with open_store(self.path) as store:
            for first in range(0, len(self.ids), size):
                images, labels = store.read_many(self.ids[first:first + size])
                if store.encoding and not raw:
                    images = decode.decode_images(images)
                yield images, labels
