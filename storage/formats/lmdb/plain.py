"""A store read with py-lmdb alone, following the layout in ``backend``'s docstring.

The interop test checks that this reader, which shares no code with the backend,
sees what the backend wrote: the layout is the contract, not the code.
"""
from __future__ import annotations

import struct
import zlib

import lmdb
import numpy as np


def read_plainly(path) -> dict[int, tuple[np.ndarray, int]]:
    """id -> (image, label) of every image in the store at ``path``."""
    store = {}
    with lmdb.open(str(path), readonly=True, lock=False, max_dbs=2) as env:
        meta, chunks = env.open_db(b"meta", create=False), env.open_db(b"chunks", create=False)
        with env.begin() as txn:
            shape = struct.unpack("<3I", txn.get(b"image_shape", db=meta))
            per_chunk = struct.unpack("<I", txn.get(b"chunk_images", db=meta))[0]
            count = struct.unpack("<Q", txn.get(b"count", db=meta))[0]
            for key, value in txn.cursor(db=chunks):
                store.update(_parse_chunk(value, struct.unpack(">Q", key)[0] * per_chunk, shape))
    if count != len(store):
        raise ValueError(f"meta count says {count} images, the chunks hold {len(store)}")
    return store


def _parse_chunk(value: bytes, first_id: int, shape) -> dict:
    """The images of one value, in either layout (b"IMC2", or b"IMGC" from before)."""
    magic, n, checksum, _key_crc = struct.unpack_from("<4sIII", value)
    if magic == b"IMGC":  # one CRC-32 over everything after the header
        if zlib.crc32(value[16:]) != checksum:
            raise ValueError(f"the chunk of ids from {first_id} fails its CRC")
        slots_at, pixels_at = 16 + 8 * n, 16 + 12 * n
    elif magic == b"IMC2":  # a CRC-32 of the header; images have checksums of their own
        if zlib.crc32(value[12:16 + 20 * n]) != checksum:
            raise ValueError(f"the chunk of ids from {first_id} fails its header CRC")
        slots_at, pixels_at = 16 + 16 * n, 16 + 20 * n
    else:
        raise ValueError(f"the chunk of ids from {first_id} has magic {magic!r}")
    values = np.frombuffer(value, "<i8", n, 16)
    slots = np.frombuffer(value, "<u4", n, slots_at)
    pixels = np.frombuffer(value, np.uint8, offset=pixels_at).reshape(n, *shape)
    return {first_id + int(slot): (image, int(label))
            for slot, image, label in zip(slots, pixels, values)}
