"""What a conversion writes (``--encoded``): pixel arrays, images encoded here, or the
source's own encoded bytes, unchanged.

``none``: pixel arrays (an encoded source is decoded); ``jpeg``/``png``: each image
encoded (JPEG quality 90) into a store of that encoding; ``keep``: the bytes of an
encoded source (an encoded store, or an ImageFolder of one file type) copied as they are.
Everything is checked before anything is created at the destination.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storage.encode import check_channels, encode_images
from storage.errors import DatasetError, UnsupportedOperationError
from storage.registry import BACKENDS, backend_class

ENCODED_CHOICES = ("none", "jpeg", "png", "keep")
SAMPLE = 16  # images encoded to estimate the stored size of one


@dataclass(frozen=True)
class Output:
    encoded: str = "none"          # the --encoded choice
    encoding: str | None = None    # what the destination holds: None for pixel arrays

    @property
    def raw(self) -> bool:
        """Whether source parts hand over their encoded bytes rather than pixels."""
        return self.encoded == "keep"

    @property
    def plan_field(self) -> str | None:
        """How shards and records tell conversions apart: None for pixel arrays."""
        return None if self.encoded == "none" else self.encoded

    def prepare(self, images):
        """A batch from a source part as the destination's ``write_many`` takes it."""
        if self.encoded in ("jpeg", "png"):
            return encode_images(images, self.encoded)
        return images

    def estimate_image_bytes(self, source) -> int:
        """About how many bytes one image takes in the destination (to size shards)."""
        shape_bytes = int(np.prod(source.info.image_shape))
        if self.encoding is None:
            return shape_bytes
        count = min(SAMPLE, source.info.count)
        for images, _labels in source.part(0, count).batches(count, raw=self.raw):
            datas = self.prepare(images)
            return max(1, sum(map(len, datas)) // len(datas))
        return shape_bytes


def choose_output(encoded: str, source_info, store_format: str) -> Output:
    """The output for ``--encoded`` from this source into ``store_format``; refuses what
    cannot be done, naming what can."""
    if encoded not in ENCODED_CHOICES:
        raise UnsupportedOperationError(
            f"--encoded must be one of {', '.join(ENCODED_CHOICES)}, not {encoded!r}")
    if encoded == "keep":
        if source_info.encoding is None:
            raise DatasetError(
                f"--encoded keep copies encoded images, but {source_info.description} "
                f"{source_info.why_not_encoded or 'holds pixel arrays'}; pass --encoded jpeg "
                "or png to encode its images")
        encoding = source_info.encoding
    elif encoded == "none":
        encoding = None
    else:
        encoding = encoded
        check_channels(encoding, source_info.image_shape[-1])
    check_format_holds(store_format, encoding)
    return Output(encoded, encoding)


def check_format_holds(store_format: str, encoding: str | None) -> None:
    """UnsupportedOperationError when ``store_format`` cannot hold ``encoding`` (None: arrays)."""
    capabilities = backend_class(store_format).capabilities
    if encoding is None and not capabilities.arrays:
        raise UnsupportedOperationError(
            f"the format {store_format!r} holds encoded images only; pass --encoded jpeg, png "
            "or keep, or choose another format")
    if encoding is not None and encoding not in capabilities.encodings:
        able = [name for name, entry in BACKENDS.items() if not entry.container
                and encoding in backend_class(name).capabilities.encodings]
        raise UnsupportedOperationError(
            f"the format {store_format!r} cannot hold encoded {encoding} images; choose "
            f"--format {', '.join(able[:-1])} or {able[-1]}, or leave --encoded out to store "
            "pixel arrays")


def batch_bytes(images) -> int:
    """The bytes of a batch of pixels or of encoded images (for progress rates)."""
    return images.nbytes if isinstance(images, np.ndarray) else sum(map(len, images))
