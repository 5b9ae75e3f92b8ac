"""The shard files of a tar store: names, index files, and the journal of a multi-shard commit.

An index is int64 ``.npy`` (rows, 5): id, offset, size, label, checksum, where
offset and size locate the ``.npy`` member's data in the shard and checksum is
``storage.core.checksums`` of id, label and pixels (uint64 bits as int64).
It is written beside the shard under a temporary name and renamed into
place: it is the commit record. A commit that changes several shards first
writes every new index under its temporary name, then ``commit.json`` naming
them, then renames them; whoever finds ``commit.json`` (a reader too) takes
the temporary indexes it names as committed, and the next writer finishes
the renames.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from tokenize import TokenError

import numpy as np

from storage.core.files import fsync_directory, write_json_atomically
from storage.errors import CorruptStoreError

COLUMNS = ("id", "offset", "size", "label", "checksum")
JOURNAL = "commit.json"
_SHARD = re.compile(r"shard-(\d{6})\.tar")


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def index_name(number: int) -> str:
    return f"shard-{number:06d}.index.npy"


def pending_name(number: int) -> str:
    return index_name(number) + ".new"


def shard_numbers(directory: Path) -> list[int]:
    """Numbers of the shard files present, indexed or not, ascending."""
    return sorted(int(match.group(1)) for name in os.listdir(directory)
                  if (match := _SHARD.fullmatch(name)))


def journal_numbers(directory: Path) -> list[int]:
    """Shards whose temporary index a commit record names as committed."""
    try:
        numbers = json.loads((directory / JOURNAL).read_text())["shards"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CorruptStoreError(f"'{directory / JOURNAL}' is unreadable ({error}); "
                                "the store is damaged") from None
    if not (isinstance(numbers, list) and all(type(n) is int and n >= 0 for n in numbers)):
        raise CorruptStoreError(f"'{directory / JOURNAL}' is damaged")
    return numbers


def load_index(directory: Path, number: int, journaled: bool) -> np.ndarray | None:
    """The committed index of shard ``number``, or None when it has none."""
    names = [pending_name(number), index_name(number)] if journaled else [index_name(number)]
    for name in names:
        try:
            index = np.load(directory / name, allow_pickle=False)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, EOFError, SyntaxError, TokenError) as error:
            # np.load parses the header as a Python literal: damage can fail in tokenize
            raise CorruptStoreError(f"'{directory / name}' is not a readable index ({error}); "
                                    "the store is damaged") from None
        if index.dtype != np.int64 or index.ndim != 2 or index.shape[1] != len(COLUMNS):
            raise CorruptStoreError(f"'{directory / name}' holds {index.dtype} {index.shape}, "
                                    "not an int64 index of 5 columns; the store is damaged")
        return index
    return None


def write_index(path: Path, index: np.ndarray, durable: bool) -> None:
    with open(path, "wb") as file:
        np.save(file, np.ascontiguousarray(index, np.int64))
        if durable:
            file.flush()
            os.fsync(file.fileno())


def commit(directory: Path, indexes: dict[int, np.ndarray], durable: bool) -> None:
    """Make the new ``indexes`` (shard number -> index) committed, all of them or none."""
    for number, index in indexes.items():
        write_index(directory / pending_name(number), index, durable)
    if len(indexes) > 1:  # one rename is atomic by itself; several need the record
        write_json_atomically(directory / JOURNAL, {"shards": sorted(indexes)})
    finish_commit(directory, sorted(indexes), durable)


def finish_commit(directory: Path, numbers: list[int], durable: bool) -> None:
    for number in numbers:
        with contextlib.suppress(FileNotFoundError):
            os.replace(directory / pending_name(number), directory / index_name(number))
    if durable:
        fsync_directory(directory)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / JOURNAL)
