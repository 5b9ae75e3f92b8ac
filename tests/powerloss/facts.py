"""What each format declares about power loss, read by the power-loss tests.

A format registered without an entry here is still tested, under the strictest
expectations (``STRICT``): declare an entry only for outcomes the README's
guarantees table documents.
"""
from __future__ import annotations

from dataclasses import dataclass

# Errors a store may raise at open when the cut came before its creation returned:
# no store yet (StoreNotFoundError), or a directory holding the first files of one
# without its marker (NotAStoreError when opened to write).
NOT_CREATED_YET = ("StoreNotFoundError", "NotAStoreError")


@dataclass(frozen=True)
class PowerLossFacts:
    # durable=True: typed errors allowed at open before open_store(mode="w") returned.
    open_errors_before_created: tuple[str, ...] = NOT_CREATED_YET
    # durable=False: typed errors allowed at open after any cut; nothing is promised kept.
    open_errors_not_durable: tuple[str, ...] = (*NOT_CREATED_YET, "CorruptStoreError")
    # What durable=False loses, as the README says it.
    not_durable_loses: str = "anything, the store itself included"


STRICT = PowerLossFacts()

POWER_LOSS_FACTS: dict[str, PowerLossFacts] = {
    "png": PowerLossFacts(not_durable_loses=(
        "rows and image files not yet written back; a torn labels.csv row fails its "
        "CRC (CorruptStoreError) until the store is rewritten")),
    # LMDB writes its first pages when the environment is created, before the backend
    # can sync them: a cut there leaves a data.mdb that is not yet an LMDB file.
    "lmdb": PowerLossFacts(open_errors_before_created=(*NOT_CREATED_YET, "CorruptStoreError"),
                           not_durable_loses=(
        "commits not yet written back; a meta page written before its pages leaves an "
        "environment that fails to open (CorruptStoreError)")),
    "hdf5": PowerLossFacts(not_durable_loses=(
        "batches not yet written back; metadata rewritten in place can leave a file "
        "that fails to open (CorruptStoreError)")),
}


def facts_for(backend: str) -> PowerLossFacts:
    return POWER_LOSS_FACTS.get(backend, STRICT)
