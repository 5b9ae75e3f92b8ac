"""Checks on what callers hand the library: images, labels and ids.

Every check raises a typed ``StoreError`` that names the problem and the fix;
arrays that pass come back contiguous, in the dtype the backends expect.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from storage.errors import (ImageFormatError, InvalidKeyError, InvalidOptionError, LabelError,
                            ShapeMismatchError)

MAX_ID = 2**63 - 1
MAX_IDS_AT_ONCE = 2**40  # more would not fit in memory: a range this long is a mistake


def check_images(images, *, batch: bool, dtypes=("uint8",)) -> np.ndarray:
    """Return ``images`` as a C-contiguous array of shape (N, H, W, C) or (H, W, C).

    ``dtypes``: the pixel dtypes the backend holds (its capabilities); channel limits
    are the backend's too, checked by the base class.
    """
    kind = "images" if batch else "image"
    try:
        images = np.asarray(images)
    except ValueError as error:  # numpy: "inhomogeneous shape"
        raise ImageFormatError(
            f"{kind} differ in shape, so they do not form one array ({error}); a store holds "
            "images of one shape: resize them to the same (H, W, C)") from None
    if batch and images.size == 0 and images.ndim < 4:
        raise ImageFormatError(
            f"got no images (an empty sequence, shape {images.shape}), so their shape is "
            "unknown; pass at least one image, or an empty uint8 array of shape (0, H, W, C)")
    want_ndim = 4 if batch else 3
    want = "(N, H, W, C)" if batch else "(H, W, C)"
    if images.dtype.name not in dtypes:
        allowed = " or ".join(dtypes)
        raise ImageFormatError(
            f"{kind} must be {allowed}, got {images.dtype}; "
            + ("scale to 0..255 and use .astype(np.uint8)" if dtypes == ("uint8",)
               else f"convert with .astype(np.{dtypes[0]})"))
    if images.ndim != want_ndim:
        raise ImageFormatError(
            f"{kind} must have shape {want}, got {images.ndim} dimensions {images.shape}; "
            "add a channel axis with [..., None] for greyscale"
        )
    height, width, channels = images.shape[-3:]
    if height < 1 or width < 1 or channels < 1:
        raise ImageFormatError(
            f"{kind} shape {images.shape} is not storable: height, width and channels "
            "must each be at least 1"
        )
    return np.ascontiguousarray(images)


def check_labels(labels, count: int) -> np.ndarray:
    """Return ``labels`` as an int64 array of length ``count``."""
    labels = _as_array(labels, "labels", LabelError)
    if labels.ndim != 1:
        raise LabelError(f"labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) != count:
        raise ShapeMismatchError(
            f"got {count} images but {len(labels)} labels; pass one label per image"
        )
    return _as_int64(labels, "labels", LabelError)


def check_label(label) -> int:
    return int(check_labels(np.asarray([label]), 1)[0])


def check_ids(ids, count: int | None = None) -> np.ndarray:
    """Return ids as an int64 array; each must be an integer in ``[0, 2**63)``."""
    if isinstance(ids, range):
        # len() of a range past 2**63 raises OverflowError: compare its ends instead.
        if ids and (min(ids[0], ids[-1]) < 0 or max(ids[0], ids[-1]) > MAX_ID):
            raise InvalidKeyError(f"ids {ids} fall outside [0, 2**63); use non-negative ids")
        if ids and (abs(ids[-1] - ids[0]) // abs(ids.step)) >= MAX_IDS_AT_ONCE:
            raise InvalidKeyError(
                f"{ids} asks for {abs(ids[-1] - ids[0]) // abs(ids.step) + 1} ids at once; read at most {MAX_IDS_AT_ONCE} per "
                "call (store.ids() lists the ids held)")
        ids = np.arange(ids.start, ids.stop, ids.step, dtype=np.int64)
    else:
        if isinstance(ids, (bytes, bytearray, memoryview, str, slice, set, frozenset, dict)):
            raise InvalidKeyError(
                f"ids must be a range, list, tuple or integer array, got {type(ids).__name__}"
                + (" (a set has no order: pass sorted(ids))" if isinstance(ids, (set, frozenset))
                   else " (use range(start, stop) for a run of ids)" if isinstance(ids, slice)
                   else ""))
        ids = _as_array(list(ids) if _is_lazy_iterable(ids) else ids, "ids", InvalidKeyError)
        if ids.ndim != 1:
            raise InvalidKeyError(f"ids must be one-dimensional, got shape {ids.shape}")
        ids = _as_int64(ids, "ids", InvalidKeyError)
    if count is not None and len(ids) != count:
        raise ShapeMismatchError(f"got {count} images but {len(ids)} ids; pass one id per image")
    if len(ids) and ids.min() < 0:
        raise InvalidKeyError(f"id {int(ids.min())} is negative; ids must be in [0, 2**63)")
    return ids


def check_id(key) -> int:
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise InvalidKeyError(f"id must be an integer, got {type(key).__name__} {key!r}")
    if not 0 <= int(key) <= MAX_ID:
        raise InvalidKeyError(f"id {key} is outside [0, 2**63); use a non-negative id")
    return int(key)


def check_mode(mode, modes) -> None:
    if not isinstance(mode, str) or mode not in modes:
        raise InvalidOptionError(
            f"mode must be one of {', '.join(map(repr, modes))} (read, append, create new), "
            f"got {mode!r}")


def check_flag(value, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidOptionError(f"{name} must be True or False, got {value!r}")


def check_path(path) -> Path:
    """A store path: str, bytes (decoded as the OS does) or os.PathLike."""
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(bytes(path))
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidOptionError(
            f"the store path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    return Path(path)


def _is_lazy_iterable(value) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (np.ndarray, list, tuple))


def _as_array(values, what: str, error: type[Exception]) -> np.ndarray:
    """``values`` as an array; a list mixing bools or huge ints with ints keeps them visible."""
    if isinstance(values, (list, tuple)):
        if any(isinstance(v, (bool, np.bool_)) for v in values):
            raise error(f"{what} must be integers, got a bool ({_first_bool(values)!r}); "
                        "True and False are not ids or labels")
        if any(isinstance(v, int) and not -(2**63) <= v <= MAX_ID for v in values):
            raise error(f"{what} must fit in int64; got a value outside [-2**63, 2**63)")
    try:
        return np.asarray(values)
    except (ValueError, TypeError) as failure:
        raise error(f"{what} must be a flat list or array of integers ({failure})") from None


def _first_bool(values):
    return next(v for v in values if isinstance(v, (bool, np.bool_)))


def _as_int64(values: np.ndarray, what: str, error: type[Exception]) -> np.ndarray:
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if values.dtype == bool:
        raise error(f"{what} must be integers, got booleans; True and False are not ids or labels")
    if values.dtype == object:
        # Python ints too big for int64 end up here.
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            raise error(f"{what} must be integers, got {_first_non_int(values)!r}")
        if any(not -(2**63) <= int(v) <= MAX_ID for v in values):
            raise error(f"{what} must fit in int64; got a value outside [-2**63, 2**63)")
        return values.astype(np.int64)
    if values.dtype.kind == "u":
        if values.max() > MAX_ID:
            raise error(f"{what} must fit in int64; got {int(values.max())}")
    elif values.dtype.kind != "i":
        raise error(f"{what} must be integers, got dtype {values.dtype}")
    return np.ascontiguousarray(values, dtype=np.int64)


def _first_non_int(values):
    return next(v for v in values if not isinstance(v, (int, np.integer)) or isinstance(v, bool))
