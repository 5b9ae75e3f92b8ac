"""The ordered record of what a writer did to the file system, and the crash states it allows.

The FUSE file system (``fusefs``) appends one record per change or sync as it
happens. Files and directories are named by inode numbers the file system hands
out, so a rename or an unlink of an open file stays exact. Records:

    write     ino, off, len (+ the bytes)      truncate  ino, size
    link      dir, name, ino, kind ("f"/"d")   unlink    dir, name
    rename    sdir, sname, ddir, dname          (all four are "changes")
    fsync     ino: the file's data, or a directory's entries, are on the disk
    syncfs    everything before it is on the disk
    mark      text: a note from the writer ("returned 3"), no change

A crash state after the first ``cut`` records keeps every change that a later
sync (inside the cut) made durable, plus a choice of the others: none
("synced"), an in-order prefix of them ("prefix"), or each 4 KiB piece of a write
and each directory change kept at random ("torn": write-back in any order).
A create, rename or unlink is durable only once its directory is fsynced.
"""
from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

ROOT = 1  # the inode of the mount's root directory
PIECE = 4096  # the unit a torn write-back keeps or loses
CHANGES = {"write", "truncate", "link", "unlink", "rename"}
SYNCS = {"fsync", "syncfs"}
MODES = ("synced", "prefix", "torn")
_LENGTH = struct.Struct("<II")  # header bytes, data bytes


@dataclass
class Record:
    op: str
    fields: dict
    data: bytes = b""

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None


class JournalWriter:
    """Appends records to a file as they happen (the daemon's side)."""

    def __init__(self, path: Path):
        # Unbuffered: a daemon ended by force leaves every record it acknowledged.
        self._file = open(path, "ab", buffering=0)

    def append(self, op: str, data: bytes = b"", **fields) -> None:
        header = json.dumps({"op": op, **fields}).encode()
        self._file.write(_LENGTH.pack(len(header), len(data)) + header + data)

    def close(self) -> None:
        self._file.close()


def read_journal(path: Path) -> list[Record]:
    content = Path(path).read_bytes()
    records, offset = [], 0
    while offset < len(content):
        header_length, data_length = _LENGTH.unpack_from(content, offset)
        offset += _LENGTH.size
        header = json.loads(content[offset:offset + header_length])
        offset += header_length
        data = content[offset:offset + data_length]
        offset += data_length
        records.append(Record(header.pop("op"), header, data))
    return records


def sync_boundaries(records: list[Record]) -> list[int]:
    """Cuts just before and just after each sync: where durability changes."""
    cuts = set()
    for index, record in enumerate(records):
        if record.op in SYNCS:
            cuts.update((index, index + 1))
    return sorted(cuts)


def durable_changes(records: list[Record], cut: int) -> set[int]:
    """Indices of the changes before ``cut`` that a sync before ``cut`` made durable."""
    durable: set[int] = set()
    pending: list[int] = []  # changes not yet durable, in order
    rename_halves: dict[int, set[int]] = {}  # a rename's directories synced so far
    for index in range(cut):
        record = records[index]
        if record.op in CHANGES:
            pending.append(index)
        elif record.op == "syncfs":
            durable.update(pending)
            pending = []
        elif record.op == "fsync":
            still = []
            for i in pending:
                synced = _synced_by(records[i], record.ino, rename_halves.setdefault(i, set()))
                (durable.add if synced else still.append)(i)
            pending = still
    return durable


def _synced_by(change: Record, ino: int, synced_directories: set[int]) -> bool:
    if change.op in ("write", "truncate"):
        return change.ino == ino
    if change.op in ("link", "unlink"):
        return change.dir == ino
    # A rename is durable once its source and destination directories are both synced.
    if ino in (change.sdir, change.ddir):
        synced_directories.add(ino)
    return {change.sdir, change.ddir} <= synced_directories


@dataclass
class CrashState:
    """Which records survive a cut: whole changes, and for torn writes the pieces kept."""
    cut: int
    mode: str
    kept: set[int]
    pieces: dict[int, set[int]] = field(default_factory=dict)  # write index -> piece numbers
    dropped: int = 0  # changes lost (whole or in part)


def crash_state(records: list[Record], cut: int, mode: str, seed: int) -> CrashState:
    durable = durable_changes(records, cut)
    volatile = [i for i in range(cut) if records[i].op in CHANGES and i not in durable]
    chooser = random.Random(seed)
    state = CrashState(cut, mode, set(durable))
    if mode == "prefix":
        keep = chooser.randint(0, len(volatile))
        state.kept.update(volatile[:keep])
        state.dropped = len(volatile) - keep
    elif mode == "torn":
        for index in volatile:
            record = records[index]
            if record.op == "write":
                numbers = _piece_numbers(record.off, record.len)
                chosen = {n for n in numbers if chooser.random() < 0.5}
                if chosen:
                    state.kept.add(index)
                    state.pieces[index] = chosen
                state.dropped += len(chosen) < len(numbers)
            elif chooser.random() < 0.5:
                state.kept.add(index)
            else:
                state.dropped += 1
    elif mode == "synced":
        state.dropped = len(volatile)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return state


def _piece_numbers(offset: int, length: int) -> list[int]:
    if length == 0:
        return [offset // PIECE]
    return list(range(offset // PIECE, (offset + length - 1) // PIECE + 1))


def materialize(records: list[Record], state: CrashState, target: Path) -> None:
    """Write the file tree that ``state`` leaves on the disk under ``target``."""
    files: dict[int, bytearray] = {}
    directories: dict[int, dict[str, int]] = {ROOT: {}}
    for index in sorted(state.kept):
        record = records[index]
        if record.op == "write":
            content = files.setdefault(record.ino, bytearray())
            for start, stop in _kept_ranges(record, state.pieces.get(index)):
                if len(content) < stop:
                    content.extend(bytes(stop - len(content)))
                content[start:stop] = record.data[start - record.off:stop - record.off]
        elif record.op == "truncate":
            content = files.setdefault(record.ino, bytearray())
            del content[record.size:]
            content.extend(bytes(record.size - len(content)))
        elif record.op == "link":
            parent = directories.setdefault(record.dir, {})
            parent[record.name] = record.ino
            if record.kind == "d":
                directories.setdefault(record.ino, {})
            else:
                files.setdefault(record.ino, bytearray())
        elif record.op == "unlink":
            directories.setdefault(record.dir, {}).pop(record.name, None)
        elif record.op == "rename":
            source = directories.setdefault(record.sdir, {})
            if record.sname in source:
                directories.setdefault(record.ddir, {})[record.dname] = source.pop(record.sname)
    target.mkdir(parents=True, exist_ok=True)
    _write_tree(ROOT, target, files, directories, set())


def _kept_ranges(record: Record, pieces: set[int] | None):
    end = record.off + record.len
    if pieces is None:
        yield record.off, end
        return
    for number in sorted(pieces):
        yield max(record.off, number * PIECE), min(end, (number + 1) * PIECE)


def _write_tree(ino, target: Path, files, directories, seen) -> None:
    seen.add(ino)
    for name, child in directories.get(ino, {}).items():
        if child in directories and child not in seen:
            (target / name).mkdir()
            _write_tree(child, target / name, files, directories, seen)
        elif child in files:
            (target / name).write_bytes(bytes(files[child]))


def marks_before(records: list[Record], cut: int) -> list[str]:
    return [record.text for record in records[:cut] if record.op == "mark"]


def change_count(records: list[Record]) -> int:
    return sum(record.op in CHANGES for record in records)
