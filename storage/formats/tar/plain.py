"""A tar store read with the standard library's ``tarfile`` alone (the interop tests use it)."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np


def read_plainly(path: Path) -> dict[int, tuple[np.ndarray, int]]:
    """id -> (image, label) from every shard in order; a later copy of an id wins."""
    images, labels = {}, {}
    for shard in sorted(Path(path).glob("shard-*.tar")):
        with tarfile.open(shard, format=tarfile.USTAR_FORMAT) as archive:
            for member in archive:
                stem, _, extension = member.name.partition(".")
                content = archive.extractfile(member).read()
                if extension == "npy":
                    images[int(stem)] = np.load(io.BytesIO(content), allow_pickle=False)
                elif extension == "cls":
                    labels[int(stem)] = int(content.decode("ascii"))
    return {key: (image, labels[key]) for key, image in images.items()}
