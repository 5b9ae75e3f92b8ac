"""Reading a tar shard made elsewhere, header by header, trusting nothing it says.

Used only to add such a shard to a store (``TarBackend.add_shard``); a store's
own shards are read through their index alone. Every header is checked before
its data is used: a regular file named ``{id:010d}.npy`` or ``.cls`` (no
directories, links, devices, PAX or GNU extension headers, no ``/`` or ``..``),
a size that ends inside the file, ``.npy`` data that is a uint8 array of one
shape with no pickled objects, ``.cls`` data that is a decimal int64.
"""
from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from tokenize import TokenError

import numpy as np

from storage.errors import UnsafeShardError

BLOCK = 512
_NAME = re.compile(r"(\d{10,19})\.(npy|cls)")
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_TYPES = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
          tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
          tarfile.DIRTYPE: "a directory", tarfile.FIFOTYPE: "a FIFO",
          tarfile.XHDTYPE: "a PAX header", tarfile.XGLTYPE: "a PAX header",
          tarfile.GNUTYPE_LONGNAME: "a GNU long name", tarfile.GNUTYPE_LONGLINK: "a GNU long link"}


def scan_shard(path: Path, image_shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids, images (N, H, W, C) and labels of the shard at ``path``; UnsafeShardError if unsafe."""
    data = path.read_bytes()
    images, labels = {}, {}
    offset = 0
    while offset + BLOCK <= len(data):
        block = data[offset:offset + BLOCK]
        if block == bytes(BLOCK):
            break  # the end-of-archive marker
        info = _header(block, path, offset)
        where = f"member {info.name!r} of '{path}'"
        if info.type not in _REGULAR:
            kind = _TYPES.get(info.type, f"a member of type {info.type!r}")
            raise UnsafeShardError(f"{where} is {kind}; a shard holds regular files only")
        match = _NAME.fullmatch(info.name)
        if match is None:
            problem = "climbs out of the directory ('..')" if ".." in info.name else (
                "is not named {id:010d}.npy or {id:010d}.cls")
            raise UnsafeShardError(f"{where} {problem}; refusing the shard")
        start, end = offset + BLOCK, offset + BLOCK + info.size
        if info.size < 0 or end > len(data):
            raise UnsafeShardError(f"{where} says it holds {info.size} bytes, past the end of "
                                   f"the file ({len(data)} bytes); the shard is cut short or forged")
        key, extension = int(match.group(1)), match.group(2)
        found = images if extension == "npy" else labels
        if key in found:
            raise UnsafeShardError(f"{where} appears twice; refusing the shard")
        content = data[start:end]
        found[key] = (_array(content, where, image_shape) if extension == "npy"
                      else _label(content, where))
        image_shape = image_shape or (found[key].shape if extension == "npy" else None)
        offset = start + -(-info.size // BLOCK) * BLOCK
    if set(images) != set(labels):
        unpaired = sorted(set(images) ^ set(labels))[:5]
        raise UnsafeShardError(f"'{path}' has samples without both .npy and .cls: {unpaired}")
    if not images:
        raise UnsafeShardError(f"'{path}' holds no samples")
    ids = np.array(list(images), np.int64)
    return ids, np.stack([images[key] for key in images]), np.array(
        [labels[key] for key in images], np.int64)


def _header(block: bytes, path: Path, offset: int) -> tarfile.TarInfo:
    try:
        return tarfile.TarInfo.frombuf(block, "ascii", "strict")
    except (tarfile.HeaderError, UnicodeDecodeError, ValueError) as error:
        raise UnsafeShardError(f"'{path}' has no valid tar header at byte {offset} ({error})") \
            from None


def _array(content: bytes, where: str, image_shape) -> np.ndarray:
    stream = io.BytesIO(content)
    try:
        version = np.lib.format.read_magic(stream)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(stream) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(stream))
    except (ValueError, SyntaxError, TokenError) as error:
        raise UnsafeShardError(f"{where} is not a .npy array ({error})") from None
    if dtype != np.uint8 or fortran or len(shape) != 3 or (
            image_shape is not None and tuple(shape) != tuple(image_shape)):
        raise UnsafeShardError(f"{where} holds {dtype} {shape}, not uint8 images of shape "
                               f"{image_shape}")
    pixels = content[stream.tell():]
    if len(pixels) != int(np.prod(shape)):
        raise UnsafeShardError(f"{where} holds {len(pixels)} pixel bytes for shape {shape}")
    return np.frombuffer(pixels, np.uint8).reshape(shape)


def _label(content: bytes, where: str) -> int:
    text = content.decode("ascii", "replace").strip()
    if not re.fullmatch(r"-?\d{1,19}", text) or not -2**63 <= int(text) < 2**63:
        raise UnsafeShardError(f"{where} holds {text[:30]!r}, not a decimal int64 label")
    return int(text)
