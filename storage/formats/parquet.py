"""Parquet part files: fixed-size binary pixels in row groups of about 1,000 images.

Layout of a store directory::

    store.json                   {"format": "image-store", "backend": "parquet", "image_shape": [H, W, C], ...}
    parts/part-000000.parquet    Parquet, one per write_many or write_one, numbered from 0 without gaps
    parts/incoming.parquet.new   (only after a killed write: ignored, removed by the next writer)

Each part has the columns ``id`` int64, ``label`` int64, ``checksum`` uint64 (of
id, label and pixels, see ``storage.core.checksums``) and ``image``
``fixed_size_binary(H*W*C)`` (FIXED_LEN_BYTE_ARRAY: the uint8 pixels in (H, W, C)
order). Not ``list<uint8>``: Parquet has no 8-bit physical type and would store
every pixel as an INT32. The key-value metadata holds ``image_shape`` (JSON) and
``dtype``. Row groups hold ``row_group_rows`` images (1,000 by default: fewer
make bulk reads slower, more make single reads read more); pages carry CRCs
(written for other readers; this one checks the per-image checksums).
No compression by default (``compression="zstd"`` to choose it). A later row of
an id supersedes earlier ones (overwrites append). Plain pyarrow reads it:
``pyarrow.parquet.read_table(".../parts/part-000000.parquet")``.
Encoded images (JPEG or PNG bytes) have an ``image`` column of ``large_binary``
(BYTE_ARRAY) instead: see ``storage.formats.encoded_parts``.

A part is written beside its place and renamed there (``storage.formats.parts``):
a kill leaves every committed part whole and the cut write all or nothing.
Opening reads the ``id``, ``label`` and ``checksum`` columns of every part;
reading an image decodes its row group's image column (kept for the next read).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts, PowerLoss
from storage.core.options import Options, is_int, option
from storage.errors import CorruptStoreError
from storage.formats.arrow import PixelColumns
from storage.formats.part_store import PartIndex, PartStore

ROW_GROUP_ROWS = 1000
COMPRESSIONS = ("none", "zstd")
_PARQUET_ERRORS = (pa.ArrowException, OSError, ValueError, KeyError)


def read_plainly(path) -> dict[int, tuple[np.ndarray, int]]:
    """The store read with pyarrow alone, following the layout above (for the tests)."""
    store = {}
    for part in sorted((path / "parts").glob("part-*.parquet")):
        table = pq.read_table(part)
        shape = json.loads(table.schema.metadata[b"image_shape"])
        for key, label, image in zip(table.column("id").to_pylist(),
                                     table.column("label").to_pylist(),
                                     table.column("image").to_pylist()):
            store[key] = (np.frombuffer(image, np.uint8).reshape(shape), label)  # later parts win
    return store


class _Part:
    """An open part file, and the row group whose images were decoded last."""

    def __init__(self, path):
        # Page CRCs are written for other readers; this one checks each image's own
        # checksum, and verifying the pages too made a row group 3x slower to read.
        # Without pre-buffering, a row group's column is read straight from the map (2x).
        self.file = pq.ParquetFile(str(path), memory_map=True, pre_buffer=False)
        self.cached: tuple[int, np.ndarray] | None = None


@dataclass(frozen=True)
class ParquetOptions(Options):
    compression: str = option("none", f"one of {COMPRESSIONS}",
                              lambda value: value in COMPRESSIONS)
    row_group_rows: int = option(ROW_GROUP_ROWS, "a positive int",
                                 lambda value: is_int(value) and value > 0)


class ParquetBackend(PixelColumns, PartStore):
    name = "parquet"
    suffix = "parquet"
    capabilities = Capabilities(encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.encoded_parts:EncodedParquetBackend"
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,  # a part is committed by one rename
        torn_overwrites=False,  # overwrites append a part too
        data_file="parts/incoming.parquet.new", write_calls="write,writev,pwrite64",
        syscall_kills=tuple(range(1, 40, 2)),
        crash_points=(("before-rename", 1), ("before-rename", 2), ("in-fsync", 1)),
        rolls_back_when_damaged=True,  # a deleted newest part leaves the store as before it
        file_size_limit=1_500,  # parts never grow: less than a part of one 16x16x3 image
        power_loss=PowerLoss(not_durable_loses=(
            "parts not yet written back; a part renamed into place before its bytes reached "
            "the disk fails to open (CorruptStoreError)")),
    )

    Options = ParquetOptions

    def _write_part(self, path, ids, labels, checksums, images) -> None:
        schema = self._part_schema(images)
        table = pa.table([pa.array(ids), pa.array(labels), pa.array(checksums),
                          self._image_column(images)], schema=schema)
        pq.write_table(table, str(path), row_group_size=self.options.row_group_rows,
                       compression=self.options.compression, use_dictionary=False,
                       write_statistics=["id"], write_page_checksum=True)

    def _open_part(self, path):
        try:
            part = _Part(path)
            expected = self._expected_schema()
            schema = part.file.schema_arrow
            if expected is None or not schema.equals(expected):
                raise CorruptStoreError(f"the part '{path}' has the schema {schema}, "
                                        f"not {expected}")
            metadata = part.file.metadata
            table = part.file.read(columns=["id", "label", "checksum"], use_threads=False)
            index = PartIndex(*(table.column(name).to_numpy().astype(dtype) for name, dtype in
                                (("id", np.int64), ("label", np.int64), ("checksum", np.uint64))),
                              block_rows=[metadata.row_group(group).num_rows
                                          for group in range(metadata.num_row_groups)])
        except CorruptStoreError:
            raise
        except _PARQUET_ERRORS as error:
            raise CorruptStoreError(f"cannot read the part '{path}' as Parquet ({error}); "
                                    "the store is damaged: restore it from a copy") from error
        return part, index


    def _block_images(self, part: _Part, block: int) -> np.ndarray:
        if part.cached is not None and part.cached[0] == block:
            return part.cached[1]
        try:
            column = part.file.read_row_group(block, columns=["image"], use_threads=False)
            images = self._block_content(column.column("image").combine_chunks())
        except CorruptStoreError:
            raise
        except _PARQUET_ERRORS as error:
            raise CorruptStoreError(f"cannot read row group {block} of a part of the store at "
                                    f"'{self.path}' ({error}); it is damaged: restore it from a "
                                    "copy") from error
        part.cached = (block, images)
        return images
