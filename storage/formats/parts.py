"""Immutable part files committed by rename: what the Arrow and Parquet stores share.

A store keeps its rows in ``parts/part-000000.<suffix>``, ``part-000001...``,
numbered from 0 without gaps, each written once and never changed. A writer
writes the next part as ``parts/incoming.<suffix>.new``, fsyncs it (durable
stores), and renames it to its number: the rename is the commit. A kill leaves
at most the ``incoming`` file, which readers never look at and the next writer
removes. A gap in the numbers means a part file was lost: the store is damaged.
(The loss of the newest part cannot be told from a store that never had it.)
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from storage.core.files import fsync_directory
from storage.errors import CorruptStoreError

DIRECTORY = "parts"


class PartFiles:
    """The part files of one store: listing, and committing a new one."""

    def __init__(self, store_path: Path, suffix: str):
        self.directory = Path(store_path) / DIRECTORY
        self.suffix = suffix
        self.incoming = self.directory / f"incoming.{suffix}.new"
        self._pattern = re.compile(rf"part-(\d{{6,}})\.{re.escape(suffix)}")

    def create(self, durable: bool) -> None:
        self.directory.mkdir(exist_ok=True)
        if durable:
            fsync_directory(self.directory.parent)

    def committed(self) -> list[Path]:
        """The committed parts, oldest first; [] when the directory is not made yet."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        numbered = sorted((int(found.group(1)), name) for name in names
                          if (found := self._pattern.fullmatch(name)))
        for expected, (number, name) in enumerate(numbered):
            if number != expected:
                raise CorruptStoreError(
                    f"part {expected:06d} is missing from '{self.directory}' (the next is "
                    f"'{name}'); the store is damaged: restore it from a copy")
        return [self.directory / name for _, name in numbered]

    def remove_leftovers(self) -> None:
        """Drop what a killed writer left (only a writer calls this, under its lock)."""
        self.incoming.unlink(missing_ok=True)

    def commit(self, write: Callable[[Path], None], number: int, durable: bool) -> Path:
        """Write part ``number`` through ``write(path)`` beside its place, then rename it there."""
        self.directory.mkdir(exist_ok=True)  # a store whose creation was cut short
        try:
            write(self.incoming)
            if durable:
                descriptor = os.open(self.incoming, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        except BaseException:
            self.incoming.unlink(missing_ok=True)
            raise
        final = self.directory / f"part-{number:06d}.{self.suffix}"
        os.replace(self.incoming, final)
        if durable:
            fsync_directory(self.directory)
        return final
