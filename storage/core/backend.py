"""The one interface every backend implements, and the checks they all share.

A backend implements a handful of protected methods on validated input; this
class does the rest: modes, the ``store.json`` marker that says which backend
wrote a store, argument checks, fork and pickle support, ``du``-style sizes.
"""
from __future__ import annotations

import abc
import importlib
import os
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np

from storage.core import encodings, validation
from storage.errors import (
    DuplicateKeyError,
    EncodingMismatchError,
    InvalidKeyError,
    KeyNotFoundError,
    NotAStoreError,
    ReadOnlyError,
    ShapeMismatchError,
    StoreClosedError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    UnsupportedOperationError,
    WrongBackendError,
)
from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts
from storage.core.options import Options
from storage.core.files import (disk_usage, leftover_temporaries, make_directories_durably,
                                translate_os_error)
from storage.core.marker import (MARKER, claim_shape, marker_path, marker_shape,
                                 read_marker, write_marker)

MODES = ("r", "a", "w")


class Backend(abc.ABC):
    """A store of same-shaped uint8 images, or of encoded images, with int64 labels,
    keyed by int ids.

    ``mode``: ``"r"`` read an existing store; ``"a"`` read and append, creating
    the store if the path is missing or empty; ``"w"`` create a new store, never
    over an existing one. ``durable``: fsync at the end of each ``write_many``
    and at ``close`` (never once per image), so data survives power loss.

    ``encoding``: ``None`` (the default) creates a store of pixel arrays;
    ``"jpeg"`` or ``"png"`` creates a store of encoded images, recorded in
    ``store.json``. An encoded store takes and returns each image's bytes exactly
    as given: ``write_one(id, data, label)``, ``write_many(datas, labels)`` with a
    sequence of bytes, ``read_one(id) -> (bytes, label)``, ``read_many(ids) ->
    (list[bytes], labels)``. Opening an existing store reads its encoding from the
    marker (``encoding`` may then be left out; another one is refused).
    ``storage.decode.decode_images`` turns bytes into pixels. Formats list the
    encodings they hold in ``capabilities.encodings``; one whose encoded layout
    differs names its class in ``encoded_variant``, which the constructor picks.
    """

    name: ClassVar[str]
    # What the format can hold and do (checked here before any write), and what it
    # guarantees (read by the shared tests). Formats override the defaults they differ from.
    capabilities: ClassVar[Capabilities] = Capabilities()
    facts: ClassVar[FormatFacts] = FormatFacts()
    # The keyword options a format takes (storage.core.options); checked and kept here.
    Options: ClassVar[type[Options]] = Options

    # Whether writers in other processes may write the same store at the same time
    # (else a writer lock keeps them to one): ids another writer took are not ours to
    # overwrite, and automatic ids must be chosen inside the write's own commit.
    concurrent_writers: ClassVar[bool] = False

    # The class holding this format's encoded images (a subclass with its own layout),
    # or its "module:Class" (imported when first used); None where this class holds
    # them itself, or the format holds none.
    encoded_variant: ClassVar[type | str | None] = None

    def __new__(cls, path=None, mode: str = "r", *args, encoding=None, **keywords):
        marker = None
        if encoding is None and path is not None:
            marker = _recorded_marker(path)
            encoding = marker.get("encoding") if marker else None
        store = super().__new__(cls.class_for(encoding))
        # The marker just read answers the rest of the opening (see _load_marker).
        store._opening_marker = marker
        return store

    @classmethod
    def open_with_marker(cls, marker: dict, path, mode: str = "r", **options) -> "Backend":
        """``cls(path, mode, **options)`` for a store whose marker the caller has just
        read (to find its backend): the opening reads it no second time."""
        encoding = options.get("encoding")
        store = super().__new__(cls.class_for(
            marker.get("encoding") if encoding is None else encoding))
        store._opening_marker = marker
        store.__init__(path, mode, **options)
        return store

    @classmethod
    def class_for(cls, encoding: str | None) -> type:
        """The class that holds this format's stores of ``encoding`` (None: arrays)."""
        if encoding is None or cls.encoded_variant is None:
            return cls
        return _resolve(cls.encoded_variant)

    def __init__(self, path, mode: str = "r", *, durable: bool = True, encoding=None,
                 **options):
        validation.check_mode(mode, MODES)
        validation.check_flag(durable, "durable")
        self.options = self.Options.from_keywords(self.name, options)
        self.path = validation.check_path(path)
        self.mode = mode
        self.durable = durable
        self.encoding = encodings.check_encoding(encoding)
        if self.encoding is not None and self.encoding not in self.capabilities.encodings:
            raise UnsupportedOperationError(
                f"backend {self.name!r} cannot store encoded {self.encoding} images; it "
                f"supports {self.capabilities.describe()}. Choose a backend that does, or "
                "store decoded arrays (leave encoding out)")
        # Writes through one store object from several threads take turns.
        self._write_turn = threading.RLock()
        self._closed = True
        self._pid = os.getpid()
        self._image_shape: tuple[int, int, int] | None = None
        if self.encoding is None and not self._marker_path.exists():
            self._refuse_arrays()  # before creating anything
        created = self._prepare_directory()
        if self.encoding is None:
            self._refuse_arrays()
        self._closed = False
        try:
            self._open(create=created)
        except BaseException:
            self._closed = True
            raise
        finally:
            self._opening_marker = None

    # ---- what a backend implements -------------------------------------------------
    @abc.abstractmethod
    def _open(self, create: bool) -> None:
        """Open (and with ``create``, initialise) the backend's files under ``self.path``."""

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _write_many(self, ids: np.ndarray, images: np.ndarray, labels: np.ndarray,
                    overwrite: bool) -> None:
        """Store a validated batch as one commit. Without ``overwrite`` none of the ids is
        held (the base class has checked); with it, held ids are replaced."""

    @abc.abstractmethod
    def _read_many(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels for validated ids, in the order asked.

        An id not held raises KeyError: ``raise self._missing(ids)`` where the backend
        knows which, any KeyError where it does not (the base class then finds them).
        """

    @abc.abstractmethod
    def _ids(self) -> np.ndarray:
        """Every id held, sorted ascending, as int64."""

    # Defaults, correct and simple; backends override them to be fast.
    def _read_one(self, key: int) -> tuple[np.ndarray, int]:
        images, labels = self._read_many(np.array([key], dtype=np.int64))
        return images[0], int(labels[0])

    def _read_into(self, ids: np.ndarray, images: np.ndarray, rows: np.ndarray,
                   checks) -> np.ndarray:
        """Read validated ``ids`` into ``images[rows]``; return their labels.

        For a store built of stores (``storage.sharded``), which has checked the ids
        already: no second validation, no copy of a result. A format whose reads check
        per-image checksums may hand the rows to ``checks`` (``PendingChecks``), which the
        caller verifies before the images leave it; this default checks its own.
        """
        self._check_usable()  # after a fork: this process's own handles
        try:
            read, labels = self._read_many(ids)
        except KeyError as error:
            raise self._missing_among(ids, error) from None
        images[rows] = read
        return labels

    def _write_one(self, key: int, image: np.ndarray, label: int, overwrite: bool) -> None:
        self._write_many(np.array([key], dtype=np.int64),
                         [image] if self.encoding else image[None],
                         np.array([label], dtype=np.int64), overwrite)

    def _count(self) -> int:
        return len(self._ids())

    def _contains_many(self, ids: np.ndarray) -> np.ndarray:
        """For validated ids, a bool array: which are held."""
        held = self._ids()
        positions = np.minimum(np.searchsorted(held, ids), max(len(held) - 1, 0))
        return held[positions] == ids if len(held) else np.zeros(len(ids), bool)

    def _max_id(self) -> int | None:
        """The largest id held, or None when the store is empty."""
        held = self._ids()
        return int(held[-1]) if len(held) else None

    def _append_many(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Store a validated batch under the ids after the largest held; return them.

        Correct where one writer at a time writes (its writer lock); a format that lets
        several processes write at once overrides it to choose the ids inside its commit.
        """
        ids = self._new_ids(self._next_id(), len(images))
        self._write_many(ids, images, labels, False)
        return ids

    def _new_ids(self, first: int, count: int) -> np.ndarray:
        if first + count - 1 > validation.MAX_ID:  # int64 arithmetic would wrap
            raise InvalidKeyError(
                f"the store at '{self.path}' holds id {first - 1}, so {count} more "
                "images would get ids past 2**63 - 1; pass their ids explicitly")
        return np.arange(first, first + count, dtype=np.int64)

    def _sync(self) -> None:
        """Make committed data durable against power loss."""

    def _after_fork(self) -> None:
        """Drop handles inherited from the parent process and open fresh ones."""
        self._open(create=False)

    # ---- the public interface --------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(H, W, C) of every image in the store; None while it is empty."""
        self._check_usable()
        if self._image_shape is None:
            self._image_shape = self._read_marker_shape()
        return self._image_shape

    def write_many(self, images, labels, ids=None, *, overwrite: bool = False) -> np.ndarray:
        """Store images (N, H, W, C) uint8, or a sequence of encoded images' bytes in an
        encoded store, with their labels as one commit; return their ids.

        Without ``ids`` the images get the ids after the largest one held (0, 1, ... in
        a new store).
        """
        self._check_writable()
        images = self._checked_images(images, batch=True)
        labels = validation.check_labels(labels, len(images))
        if ids is not None:
            ids = validation.check_ids(ids, len(images))
            if len(np.unique(ids)) != len(ids):
                raise DuplicateKeyError("ids repeat within the batch; give each image its own id")
        if len(images) == 0:
            if not self.encoding:
                self._check_empty_batch(images)
            return np.zeros(0, np.int64) if ids is None else ids
        self._check_capable(images, overwrite=overwrite, single=False)
        with self._write_turn:
            self._check_writable()
            if ids is not None and not overwrite:
                self._refuse_held(ids)
            if not self.encoding:
                self._accept_shape(images.shape[1:])
            if ids is None:
                ids = self._guarded_write(self._append_many, images, labels)
            else:
                self._guarded_write(self._write_many, ids, images, labels, overwrite)
            if self.durable:
                self._guarded_write(self._sync)
        return ids

    def write_one(self, key: int, image, label: int, *, overwrite: bool = False) -> None:
        """Store one image (H, W, C) uint8, or its bytes in an encoded store, under ``key``."""
        self._check_writable()
        key = validation.check_id(key)
        image = self._checked_images(image, batch=False)
        self._check_capable(image, overwrite=overwrite, single=True)
        label = validation.check_label(label)
        with self._write_turn:
            self._check_writable()
            if not overwrite:
                self._refuse_held(np.array([key], dtype=np.int64))
            if not self.encoding:
                self._accept_shape(image.shape)
            self._guarded_write(self._write_one, key, image, label, overwrite)

    def read_one(self, key: int) -> tuple[np.ndarray, int]:
        """The image (H, W, C), or its bytes in an encoded store, and the label under ``key``."""
        self._check_usable()
        key = validation.check_id(key)
        try:
            return self._read_one(key)
        except KeyError as error:
            raise self._missing_among(np.array([key], dtype=np.int64), error) from None

    def read_many(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, H, W, C), or a list of N byte strings in an encoded store, and
        labels (N,) for ``ids``: a range, list or array."""
        self._check_usable()
        ids = validation.check_ids(ids)
        if len(ids) == 0 and self.encoding:
            return [], np.zeros(0, np.int64)
        if len(ids) == 0:
            return np.zeros((0, *(self.image_shape or (0, 0, 0))), np.uint8), np.zeros(0, np.int64)
        try:
            return self._read_many(ids)
        except KeyError as error:
            raise self._missing_among(ids, error) from None

    def ids(self) -> np.ndarray:
        """Every id held, sorted ascending."""
        self._check_usable()
        return self._ids().copy()

    def __len__(self) -> int:
        self._check_usable()
        return self._count()

    def __contains__(self, key) -> bool:
        self._check_usable()
        try:
            key = validation.check_id(key)
        except StoreError:
            return False
        return bool(self._contains_many(np.array([key], dtype=np.int64))[0])

    def disk_usage(self) -> int:
        """Bytes the store occupies on disk, counted in allocated blocks as ``du`` does."""
        return disk_usage(self.path)

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.mode != "r" and self.durable and self._pid == os.getpid():
                self._guarded_write(self._sync)
        finally:
            self._closed = True
            self._guarded_write(self._close)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"mode={self.mode!r}"
        return f"<{type(self).__name__} '{self.path}' {state}>"

    # Pickling sends the path, not handles: the receiving process opens its own, for
    # reading (it is a worker; a second writer would meet the first one's lock).
    def __getstate__(self):
        return {"path": str(self.path), "mode": "r", "durable": self.durable,
                "encoding": self.encoding, "options": self.options.as_keywords()}

    def __setstate__(self, state) -> None:
        self.__init__(state["path"], state["mode"], durable=state["durable"],
                      encoding=state.get("encoding"), **state.get("options", {}))

    # ---- shared machinery ------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store at '{self.path}' is closed; open it again")
        if self._pid != os.getpid():
            # Handles inherited across fork() are not safe to share: open our own, and
            # read only, since two processes writing through one store object corrupt it.
            self._pid = os.getpid()
            self._forked = True
            self.mode = "r"
            self._after_fork()

    def _check_writable(self) -> None:
        self._check_usable()
        if getattr(self, "_forked", False):
            raise ReadOnlyError(
                f"this store object for '{self.path}' was inherited across fork(), which "
                "makes it read-only; open the store again in this process to write")
        if self.mode == "r":
            raise ReadOnlyError(
                f"the store at '{self.path}' is open for reading; open it with mode='a' to write"
            )

    def _guarded_write(self, write, *args):
        try:
            return write(*args)
        except (OSError, RuntimeError) as error:  # h5py raises RuntimeError for failed flushes
            translated = translate_os_error(error, self.path)
            if translated is error:
                raise
            raise translated from error

    def _next_id(self) -> int:
        largest = self._max_id()
        return 0 if largest is None else largest + 1

    def _refuse_arrays(self) -> None:
        if not self.capabilities.arrays:
            raise UnsupportedOperationError(
                f"backend {self.name!r} holds encoded images only; create the store with "
                f"encoding= one of {', '.join(map(repr, self.capabilities.encodings))}")

    def _checked_images(self, images, *, batch: bool):
        """Images as the store's mode takes them: an array, or a list of checked bytes."""
        if self.encoding:
            values = encodings.check_values(images, self.encoding,
                                            self.capabilities.max_value_bytes, batch=batch)
            return values if batch else values[0]
        encodings.refuse_bytes(images)
        return validation.check_images(images, batch=batch, dtypes=self.capabilities.dtypes)

    def _check_capable(self, images, *, overwrite: bool, single: bool) -> None:
        """Refuse, before anything is written, what this format cannot do."""
        can = self.capabilities
        asked = None
        if overwrite and not can.overwrite:
            asked = "overwrite=True"
        elif single and not can.write_one:
            asked = "write_one"
        elif self.encoding:
            pass  # the values were checked against the encoding already
        elif images.dtype.name not in can.dtypes:
            asked = f"{images.dtype} pixels"
        elif can.channels is not None and images.shape[-1] not in can.channels:
            asked = f"{images.shape[-1]} channels"
        if asked:
            raise UnsupportedOperationError(
                f"backend {self.name!r} cannot store {asked}; it supports {can.describe()}. "
                "Choose a backend that does (storage.BACKENDS lists them)")

    def _refuse_held(self, ids: np.ndarray) -> None:
        """DuplicateKeyError, before anything is written, for ids the store holds."""
        held = self._contains_many(ids)
        if held.any():
            self._raise_duplicates(ids[held])

    def _raise_duplicates(self, duplicates) -> None:
        shown = ", ".join(str(int(key)) for key in list(duplicates)[:5])
        if self.concurrent_writers:  # they may be another writer's images: never advise replacing
            advice = ("another writer may have stored them; use other ids, or leave ids out "
                      "to get new ones")
        else:
            advice = "pass overwrite=True to replace them, or use new ids"
        raise DuplicateKeyError(f"id(s) {shown} already in the store at '{self.path}'; {advice}")

    def _missing(self, missing) -> KeyNotFoundError:
        """The error for ids not held, for a backend to raise where its read finds them."""
        shown = ", ".join(str(int(key)) for key in list(missing)[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return KeyNotFoundError(
            f"id(s) {shown}{more} not in the store at '{self.path}'; "
            "store.ids() lists the ids it holds")

    def _missing_among(self, ids: np.ndarray, error: KeyError) -> KeyError:
        """What a KeyError out of a read becomes: ours as it is, else one naming the ids
        not held (found only now, so reads pay nothing for the check)."""
        if isinstance(error, KeyNotFoundError):
            return error
        held = self._contains_many(ids)
        return error if held.all() else self._missing(ids[~held])

    def _check_empty_batch(self, images: np.ndarray) -> None:
        """An empty batch writes nothing, but one of another shape is still refused."""
        current = self.image_shape
        if images.ndim == 4 and current is not None and images.shape[1:] != current:
            self._accept_shape(images.shape[1:])

    def _accept_shape(self, shape) -> None:
        shape = tuple(int(n) for n in shape)
        current = self.image_shape
        if current is None:
            # Another writer (process or object) may be claiming a shape at this moment.
            current = self._image_shape = claim_shape(self.path, self.name, shape,
                                                      **self._marker_fields())
        if shape != current:
            raise ShapeMismatchError(
                f"images of shape {shape} do not fit the store at '{self.path}', "
                f"which holds images of shape {current}; resize them or use another store"
            )

    # ---- the marker: which backend wrote this directory -------------------------------
    @property
    def _marker_path(self) -> Path:
        return marker_path(self.path)

    def _prepare_directory(self) -> bool:
        """Check the path for ``mode``; return True when a new store must be created."""
        if self.path.exists() and not self.path.is_dir():
            raise NotAStoreError(
                f"'{self.path}' is a file, not a store directory; choose a directory path"
            )
        if self._marker_path.exists():
            if self.mode == "w":
                raise StoreExistsError(
                    f"a store already exists at '{self.path}'; open it with mode='a' to "
                    "append, or remove it first"
                )
            self._check_marker()
            if self.mode == "a" and not os.access(self.path, os.W_OK):
                raise ReadOnlyError(
                    f"the store at '{self.path}' is in a directory this process cannot write "
                    "(permissions, or a read-only file system); open it with mode='r'")
            return False
        if self.mode == "r":
            raise StoreNotFoundError(
                f"no store at '{self.path}' (no {MARKER}); check the path, "
                "or open with mode='w' to create one"
            )
        try:
            if self.path.exists():
                # What a creator killed before its marker was in place leaves: nothing else.
                leftovers = leftover_temporaries(self._marker_path)
                if any(entry not in leftovers and not _marker_temporary(entry)
                       for entry in self.path.iterdir()):
                    raise NotAStoreError(
                        f"'{self.path}' is a non-empty directory that holds no store; "
                        "choose an empty or new directory")
                for leftover in leftovers:
                    leftover.unlink(missing_ok=True)
            if self.durable:  # the store's own name must survive a power loss too
                make_directories_durably(self.path)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
            # Exclusive: of two creators at once exactly one writes the marker.
            created = write_marker(self.path, self.name, None, exclusive=True,
                                   **self._encoding_field(), **self._marker_fields())
        except NotADirectoryError:
            raise NotAStoreError(
                f"'{self.path}' lies inside a file, not a directory; choose another path"
            ) from None
        except OSError as error:
            raise translate_os_error(error, self.path) from error
        if not created:  # another creator won the race: join its store, as mode allows
            return self._prepare_directory()
        return True

    def _load_marker(self) -> dict:
        # While the store opens, the marker read to choose its class serves every
        # question: one read per open, where three cost a quarter of opening LMDB.
        marker = getattr(self, "_opening_marker", None)
        return marker if marker is not None else read_marker(self.path)

    def _check_marker(self) -> None:
        marker = self._load_marker()
        written_by = marker["backend"]
        if written_by != self.name:
            raise WrongBackendError(
                f"store at '{self.path}' was written by backend {written_by!r}, not "
                f"{self.name!r}; open it with backend={written_by!r}"
            )
        recorded = marker.get("encoding")  # absent in stores of arrays, old ones included
        if recorded is not None and recorded not in encodings.ENCODINGS:
            raise NotAStoreError(f"'{self._marker_path}' holds an unknown encoding {recorded!r}")
        if self.encoding is not None and recorded != self.encoding:
            holds = f"encoded {recorded} images" if recorded else "pixel arrays"
            raise EncodingMismatchError(
                f"the store at '{self.path}' holds {holds}, not {self.encoding} images; open "
                f"it without encoding= (it is read from the store), or use another path")
        if recorded is not None and recorded not in self.capabilities.encodings:
            raise UnsupportedOperationError(
                f"backend {self.name!r} cannot read the encoded {recorded} images at "
                f"'{self.path}'; open it with open_store(path) to pick the right class")
        self.encoding = recorded

    def _read_marker_shape(self):
        return marker_shape(self._load_marker(), self.path)

    def _write_marker(self) -> None:
        self._opening_marker = None
        write_marker(self.path, self.name, self._image_shape, **self._encoding_field(),
                     **self._marker_fields())

    def _encoding_field(self) -> dict:
        """``{"encoding": ...}`` in an encoded store's marker; nothing in an array store's."""
        return {"encoding": self.encoding} if self.encoding else {}

    def _marker_fields(self) -> dict:
        """A format's own fields in ``store.json`` (its layout version, say)."""
        return {}


def _resolve(variant):
    if isinstance(variant, str):
        module_name, class_name = variant.split(":")
        return getattr(importlib.import_module(module_name), class_name)
    return variant


def _recorded_marker(path) -> dict | None:
    """An existing store's marker, for choosing its class; None when there is no
    readable marker (the constructor then reports what is wrong)."""
    try:
        return read_marker(validation.check_path(path))
    except (StoreError, OSError):
        return None


def _marker_temporary(entry: Path) -> bool:
    """A marker another creator is writing at this moment (its process runs)."""
    return entry.name.startswith(MARKER + ".") and entry.name.endswith(".tmp")
