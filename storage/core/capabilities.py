"""What a format can hold and do, declared once per backend class and checked by the base class.

A format says what it supports instead of raising from deep inside its library:
an append-only format sets ``overwrite=False``, one that cannot store a single
image cheaply sets ``write_one=False``. ``Backend`` checks every call against
these before anything is written and raises ``UnsupportedOperationError``
naming the backend, what was asked and what it can do.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    overwrite: bool = True        # write_many/write_one with overwrite=True replace images
    write_one: bool = True        # single-image writes (else only write_many)
    dtypes: tuple[str, ...] = ("uint8",)  # pixel dtypes an array store holds
    channels: tuple[int, ...] | None = None  # channel counts held; None: any
    encodings: tuple[str, ...] = ()       # encoded-image modes ("jpeg", "png"); () arrays only
    arrays: bool = True           # stores of pixel arrays (False: encoded images only)
    max_value_bytes: int = 2**31 - 1  # the longest encoded image one value may hold
    processes: str = "many"       # "many": readers in several processes; "one": one process at a time

    def describe(self) -> str:
        """One line for error messages: what this format can do."""
        parts = [f"dtypes {', '.join(self.dtypes)}",
                 "any channel count" if self.channels is None
                 else f"{', '.join(map(str, self.channels))} channels",
                 "overwrites" if self.overwrite else "no overwrites (append-only)",
                 "single-image writes" if self.write_one else "batch writes only",
                 f"encoded {', '.join(self.encodings)} images" if self.encodings
                 else "no encoded images"]
        return "; ".join(parts)
