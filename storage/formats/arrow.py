"""Arrow IPC files (Feather v2), uncompressed: pixels memory-mapped and copied once.

Layout of a store directory::

    store.json                 {"format": "image-store", "backend": "arrow", "image_shape": [H, W, C], ...}
    parts/part-000000.arrow    Arrow IPC file format (Feather v2), no compression
    parts/part-000001.arrow    ... one per write_many or write_one, numbered from 0 without gaps
    parts/incoming.arrow.new   (only after a killed write: ignored, removed by the next writer)

Each part is a schema and record batches of at most 10,000 rows with the columns
``id`` int64, ``label`` int64, ``checksum`` uint64 (of id, label and pixels, see
``storage.core.checksums``) and ``image`` ``fixed_size_binary(H*W*C)``: the
image's uint8 pixels in (H, W, C) order. The schema metadata holds
``image_shape`` (JSON) and ``dtype``. A later row of an id supersedes earlier
ones (overwrites append). Plain pyarrow reads it:
``pyarrow.ipc.open_file(".../parts/part-000000.arrow").read_all()``.
Encoded images (JPEG or PNG bytes) have an ``image`` column of ``large_binary``
instead: see ``storage.formats.encoded_parts``.

A part is written beside its place and renamed there (``storage.formats.parts``):
a kill leaves every committed part whole and the cut write all or nothing.
Opening maps every part into memory (``pyarrow.memory_map``) and reads the
``id``, ``label`` and ``checksum`` columns into an id -> (part, batch, row) map;
reads copy pixels once, from the mapped file into the output, and check them.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from storage.core.capabilities import Capabilities
from storage.core.facts import FormatFacts, PowerLoss
from storage.errors import CorruptStoreError
from storage.formats.part_store import COLUMNS, PartIndex, PartStore

BATCH_ROWS = 10_000
_DTYPES = {"id": pa.int64(), "label": pa.int64(), "checksum": pa.uint64()}


def schema_for(image_shape) -> pa.Schema:
    """The schema of a part holding images of ``image_shape`` (H, W, C)."""
    return pa.schema([*(pa.field(name, dtype, nullable=False) for name, dtype in _DTYPES.items()),
                      pa.field("image", pa.binary(int(np.prod(image_shape))), nullable=False)],
                     metadata={"image_shape": json.dumps(list(image_shape)), "dtype": "uint8"})


def image_column(images: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Images (N, H, W, C) uint8, contiguous, as fixed-size binary values without a copy."""
    width = int(np.prod(images.shape[1:]))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(images),
                                                [None, pa.py_buffer(images)])


def images_of(column: pa.Array, image_shape) -> np.ndarray:
    """The pixels of a fixed-size binary column as (rows, H, W, C) uint8, without a copy."""
    width = column.type.byte_width
    data = column.buffers()[1]
    if column.null_count or data is None or data.size < (column.offset + len(column)) * width:
        raise CorruptStoreError("an image column holds nulls or too few bytes; "
                                "the store is damaged: restore it from a copy")
    flat = np.frombuffer(data, np.uint8, len(column) * width, column.offset * width)
    return flat.reshape(len(column), *image_shape)


def read_plainly(path) -> dict[int, tuple[np.ndarray, int]]:
    """The store read with pyarrow alone, following the layout above (for the tests)."""
    store = {}
    for part in sorted((path / "parts").glob("part-*.arrow")):
        with pa.memory_map(str(part)) as source:
            table = pa.ipc.open_file(source).read_all()
            shape = json.loads(table.schema.metadata[b"image_shape"])
            pixels = np.frombuffer(table.column("image").combine_chunks().buffers()[1], np.uint8)
            pixels = pixels[:table.num_rows * int(np.prod(shape))].reshape(-1, *shape)
            for key, label, image in zip(table.column("id").to_pylist(),
                                         table.column("label").to_pylist(), pixels):
                store[key] = (image.copy(), label)  # later parts win
    return store


class PixelColumns:
    """How an Arrow or Parquet part's image column is written and read: pixels, one
    fixed-size binary value per image (``EncodedParts`` holds bytes instead)."""

    def _part_schema(self, images) -> pa.Schema:
        return schema_for(images.shape[1:])

    def _image_column(self, images) -> pa.Array:
        return image_column(images)

    def _expected_schema(self) -> pa.Schema | None:
        """The schema every part must have; None when no part can exist yet."""
        return schema_for(self.image_shape) if self.image_shape is not None else None

    def _block_content(self, column: pa.Array):
        return images_of(column, self.image_shape)


class ArrowBackend(PixelColumns, PartStore):
    name = "arrow"
    suffix = "arrow"
    capabilities = Capabilities(encodings=("jpeg", "png"))
    encoded_variant = "storage.formats.encoded_parts:EncodedArrowBackend"
    facts = FormatFacts(
        plain_reader=read_plainly,
        atomic_batches=True,  # a part is committed by one rename
        torn_overwrites=False,  # overwrites append a part too
        data_file="parts/incoming.arrow.new", write_calls="write,writev,pwrite64",
        syscall_kills=tuple(range(1, 60, 3)),
        crash_points=(("before-rename", 1), ("before-rename", 2), ("in-fsync", 1)),
        rolls_back_when_damaged=True,  # a deleted newest part leaves the store as before it
        file_size_limit=1_500,  # parts never grow: less than a part of one 16x16x3 image
        power_loss=PowerLoss(not_durable_loses=(
            "parts not yet written back; a part renamed into place before its bytes reached "
            "the disk fails to open (CorruptStoreError)")),
    )

    def _write_part(self, path, ids, labels, checksums, images) -> None:
        schema = self._part_schema(images)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for start in range(0, len(ids), BATCH_ROWS):
                stop = start + BATCH_ROWS
                writer.write_batch(pa.record_batch(
                    [pa.array(ids[start:stop]), pa.array(labels[start:stop]),
                     pa.array(checksums[start:stop]), self._image_column(images[start:stop])],
                    schema=schema))


    def _open_part(self, path):
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            expected = self._expected_schema()
            if expected is None or not reader.schema.equals(expected):
                raise CorruptStoreError(
                    f"the part '{path}' has the schema {reader.schema}, not {expected}")
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            for batch in batches:
                batch.validate()  # buffers as long as the lengths say: no reads past them
            columns = {name: [batch.column(name) for batch in batches] for name in COLUMNS}
            index = PartIndex(*(_joined(columns[name], dtype) for name, dtype in
                                (("id", np.int64), ("label", np.int64), ("checksum", np.uint64))),
                              block_rows=[batch.num_rows for batch in batches])
            images = [self._block_content(column) for column in columns["image"]]
        except CorruptStoreError:
            raise
        except (pa.ArrowException, OSError) as error:
            raise CorruptStoreError(f"cannot read the part '{path}' as an Arrow IPC file "
                                    f"({error}); the store is damaged: restore it from a copy"
                                    ) from error
        return images, index

    def _block_images(self, handle, block):
        return handle[block]


def _joined(chunks, dtype) -> np.ndarray:
    if not chunks:
        return np.zeros(0, dtype)
    if any(chunk.null_count for chunk in chunks):
        raise CorruptStoreError("an index column holds nulls; the store is damaged")
    return np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in chunks]).astype(dtype)
