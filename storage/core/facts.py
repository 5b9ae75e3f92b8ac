"""What a format guarantees, declared beside its code for the shared tests to read.

The interop, crash, corruption and full-disk tests run over every registered
format and take what they need to know from its ``facts``. A fact a format
leaves at ``None`` makes the test that needs it skip with a reason saying which
fact to declare, never fail with a ``KeyError``. A fact that only excuses
something (torn overwrites, a rollback after damage) left at ``None`` excuses
nothing: the test then holds the format to the strictest behaviour.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storage.errors import CorruptStoreError, NotAStoreError, StoreError, StoreNotFoundError

# path -> {id: (image, label)}: the store read with the plain library, not with storage.
PlainReader = Callable[[Path], dict[int, tuple[np.ndarray, int]]]

# What an open after a power cut meets when the cut came before open_store(mode="w")
# returned: no store yet, or a directory holding a store's first files without its marker.
NOT_CREATED_YET: tuple[type[StoreError], ...] = (StoreNotFoundError, NotAStoreError)


@dataclass(frozen=True)
class PowerLoss:
    """What a power cut may do beyond losing what was not synced: the README's
    "power loss" rows, which tests/powerloss holds every format to.

    With ``durable=True`` every image of every call before the last returned
    ``write_many`` (or ``close``) survives, byte for byte, and a store whose creation
    returned opens; what a store reads is never wrong, durable or not.
    """
    # durable=True: typed errors an open may raise after a cut before the store's
    # creation returned.
    errors_before_created: tuple[type[StoreError], ...] = NOT_CREATED_YET
    # durable=False: typed errors an open may raise after any cut.
    errors_not_durable: tuple[type[StoreError], ...] = (*NOT_CREATED_YET, CorruptStoreError)
    # What durable=False loses, as the README says it.
    not_durable_loses: str = "anything not yet written back, the store itself included"


@dataclass(frozen=True)
class FormatFacts:
    # Reads a store with the format's own library, following the module docstring's layout.
    plain_reader: PlainReader | None = None
    # A write_many is all or nothing after a crash (False: a prefix of it may survive).
    atomic_batches: bool | None = None
    # An overwrite cut short can leave images torn (they then read as CorruptStoreError).
    torn_overwrites: bool | None = None
    # The file the data is written to, and the system calls that write it (for strace faults).
    data_file: str | None = None
    write_calls: str | None = None
    # How many write calls to the data file a small write session makes: the kill points tried.
    syscall_kills: tuple[int, ...] | None = None
    # Named crash points in the write path (tests/reliability/writer.py): (point, nth call).
    crash_points: tuple[tuple[str, int], ...] = field(default=())
    # Damage to the format's files can bring back an earlier commit instead of an error.
    rolls_back_when_damaged: bool | None = None
    # The format's own checksums cover blocks of several values (LevelDB's log records and
    # table blocks): damage to one image can make its neighbours read as CorruptStoreError too.
    checks_whole_blocks: bool = False
    # A file-size limit (bytes) that a few batches reach, for the full-disk tests.
    file_size_limit: int | None = None
    # Store objects on one path see each other's writes (threads and processes sharing a
    # store); False only for a format whose objects each hold their own copy (the toy).
    shared_between_objects: bool = True
    # What a power cut does beyond losing unsynced data (see PowerLoss).
    power_loss: PowerLoss | None = None
    # A store in a directory this process may not write can still be read (else ReadOnlyError).
    reads_read_only_directory: bool = True


def missing_fact(backend: str, fact: str) -> str:
    """The skip reason for a test that needs a fact the format does not declare."""
    return (f"backend {backend!r} declares no {fact!r} in its facts "
            "(storage.core.facts.FormatFacts); declare it to run this test")
