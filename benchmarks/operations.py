"""The one table of what the suite measures, read by the suite, the report and the gate."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    name: str  # extra_info["operation"] of its results
    test: str  # the benchmark function that measures it
    what: str  # what one timed call does, for figure titles
    classic: str  # the classic reference's operation it is compared with (vs_classic)
    reference: str = "raw"  # the backend (decoder) it is compared with in the run (vs_raw)
    # Measured at every default image side; the others only at 32 px unless --storage-size
    # names the sides (the default run answers the size questions, disk and bulk time,
    # within its time budget).
    every_side: bool = False


OPERATIONS = (
    Operation("store_single", "test_store_single", "write 1 image into an open store of N",
              "store_single"),
    Operation("store_many", "test_store_many", "write N images into a new store", "store_many",
              every_side=True),
    Operation("read_many_random", "test_read_many_random",
              "read 1,000 random ids from an open store of N", "read_many_random"),
    # The classic code opens the store for every single read: the warm read is
    # measured against that, and the open-per-call variant against the same.
    Operation("read_single", "test_read_single", "read 1 image from an open store of N",
              "open_read_single"),
    Operation("read_many", "test_read_many", "open a store of N and read all N images",
              "read_many", every_side=True),
    Operation("open_read_single", "test_open_read_single",
              "open a store of N, read 1 image, close", "open_read_single"),
    # A training loop's access patterns (benchmarks/test_access.py), each against the
    # classic code reading the same way.
    Operation("seq_scan", "test_seq_scan", "read 256 ids in id order from an open store of N",
              "seq_scan"),
    Operation("rand_item", "test_rand_item", "read 1 shuffled id from an open store of N",
              "rand_item"),
    Operation("rand_batch", "test_rand_batch", "read 256 shuffled ids from an open store of N",
              "rand_batch"),
    # Encoded images (JPEG q90 bytes): against the bytes in one file, and the decoders.
    Operation("store_many_encoded", "test_store_many_encoded",
              "write N JPEG images' bytes into a new store", "store_many_encoded", "raw-blob",
              every_side=True),
    Operation("read_many_encoded", "test_read_many_encoded",
              "open a store of N JPEG images and read all N images' bytes", "read_many_encoded",
              "raw-blob", every_side=True),
    Operation("decode", "test_decode", "decode N JPEG images into one array", "decode",
              "pillow", every_side=True),
)
BY_NAME = {operation.name: operation for operation in OPERATIONS}
BY_TEST = {operation.test: operation for operation in OPERATIONS}
NAMES = tuple(BY_NAME)


def tests_of(*names: str) -> tuple[str, ...]:
    """The benchmark functions that measure the named operations."""
    return tuple(BY_NAME[name].test for name in names)
