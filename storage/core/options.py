"""A backend's options: one small frozen dataclass, checked, kept and pickled by ``Backend``.

A format with options declares them as fields, each made with ``option(default,
allowed, accepts)``; ``open_store(path, backend, map_size=...)`` passes them as
keywords. Unknown keywords and values a field does not accept raise
``InvalidOptionError`` naming the option and what it allows.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from storage.errors import InvalidOptionError


def option(default, allowed: str, accepts: Callable[[Any], bool]):
    """A field of an options dataclass: its default, what it allows in words, and a check."""
    return field(default=default, metadata={"allowed": allowed, "accepts": accepts})


def is_int(value) -> bool:
    """An integer and not a bool (``True`` is an int to Python, never a size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Options:
    """No options: the base of every backend's options class."""

    @classmethod
    def from_keywords(cls, backend: str, keywords: dict) -> "Options":
        names = [spec.name for spec in fields(cls)]
        unknown = sorted(set(keywords) - set(names))
        if unknown:
            has = f"its options are {', '.join(names)}" if names else "it has no options"
            raise InvalidOptionError(
                f"backend {backend!r} has no option {unknown[0]!r}; {has}")
        for spec in fields(cls):
            if spec.name in keywords and not spec.metadata["accepts"](keywords[spec.name]):
                raise InvalidOptionError(
                    f"option {spec.name!r} of backend {backend!r} must be "
                    f"{spec.metadata['allowed']}, got {keywords[spec.name]!r}")
        return cls(**keywords)

    def as_keywords(self) -> dict:
        return asdict(self)
