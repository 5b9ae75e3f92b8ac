"""Encoded images (JPEG or PNG bytes): the encodings a store may declare, and the checks
on the values handed to one.

A store created with ``encoding="jpeg"`` holds each image's bytes exactly as
given. The checks here are cheap and never decode: a value must be bytes-like,
non-empty, within the format's per-value limit, and start with the encoding's
file signature. Each failure names the value's index in the batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from storage.errors import (EncodedValueError, InvalidOptionError, StoreModeError,
                            ValueTooLargeError)

# File signatures (JPEG: SOI and the first marker's 0xFF; PNG: its 8-byte signature).
SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
ENCODINGS = tuple(SIGNATURES)
_BYTES_LIKE = (bytes, bytearray, memoryview)


def check_encoding(encoding) -> str | None:
    """``None`` (a store of arrays) or one of ENCODINGS."""
    if encoding is None or (isinstance(encoding, str) and encoding in SIGNATURES):
        return encoding
    raise InvalidOptionError(
        f"encoding must be None (arrays) or one of {', '.join(map(repr, ENCODINGS))}, "
        f"got {encoding!r}")


def is_bytes_like(value) -> bool:
    return isinstance(value, _BYTES_LIKE) or (isinstance(value, np.ndarray) and value.dtype == np.bytes_)


def check_values(values, encoding: str, limit: int, *, batch: bool) -> list[bytes]:
    """``values`` (a sequence of bytes-like, or one with ``batch=False``) as a list of bytes."""
    if not batch:
        return [_check_value(values, encoding, limit, None)]
    if isinstance(values, np.ndarray) or is_bytes_like(values):
        raise StoreModeError(
            f"this store holds {encoding} images, so write_many takes a sequence of "
            f"{encoding} byte strings, got {_kind(values, article=True)}; encode the images "
            "first (one bytes value per image), or "
            "use a store created without encoding= for arrays")
    if not isinstance(values, Sequence):
        values = list(values)
    return [_check_value(value, encoding, limit, index) for index, value in enumerate(values)]


def _check_value(value, encoding: str, limit: int, index: int | None) -> bytes:
    where = "the value" if index is None else f"value {index}"
    if isinstance(value, np.ndarray):
        raise StoreModeError(
            f"{where} is an array {value.shape} {value.dtype}, but this store holds {encoding} "
            "images as bytes; encode it first, or use a store created without encoding=")
    if not isinstance(value, _BYTES_LIKE):
        raise EncodedValueError(
            f"{where} is {_kind(value)}, not bytes; pass the {encoding} file's bytes")
    data = bytes(value) if not isinstance(value, bytes) else value
    if not data:
        raise EncodedValueError(f"{where} is empty; an encoded image has at least its header")
    if len(data) > limit:
        raise ValueTooLargeError(
            f"{where} is {len(data)} bytes, over this format's limit of {limit} bytes per "
            "image; re-encode it smaller, or choose a format with a larger limit")
    signature = SIGNATURES[encoding]
    if not data.startswith(signature):
        raise EncodedValueError(
            f"{where} starts {data[:8]!r}, not the {encoding} signature {signature!r}; "
            f"the store holds {encoding} images only")
    return data


def refuse_bytes(images) -> None:
    """StoreModeError when an array store is handed bytes (one value, or a batch of them)."""
    if is_bytes_like(images):
        raise StoreModeError(
            "got bytes, but this store holds pixel arrays; decode the image first "
            "(storage.decode), or create the store with encoding='jpeg' or 'png'")
    if isinstance(images, (list, tuple)):
        for index, value in enumerate(images):
            if is_bytes_like(value):
                raise StoreModeError(
                    f"value {index} is bytes, but this store holds pixel arrays; decode the "
                    "images first (storage.decode), or create the store with encoding=")


def _kind(value, *, article: bool = False) -> str:
    if isinstance(value, np.ndarray):
        return f"an array {value.shape} {value.dtype}"
    return f"a {type(value).__name__}" if article else f"of type {type(value).__name__}"
