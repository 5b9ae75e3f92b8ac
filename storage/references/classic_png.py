"""Reference only: the classic "one PNG per image, labels in CSV" code, reproduced faithfully.

This is the widely copied baseline from the "three ways of storing lots of
images in Python" comparison, kept to measure our ``png`` backend against.
Never recommended: a crash can leave a half-written PNG that no record marks
as uncommitted, and reads decode one image at a time with Pillow.

Layout of a store directory::

    store.json            the marker every store has
    <id>.png              one image, Pillow's default PNG settings
    <id>.csv              its label, when stored singly (one CSV per image)
    batch-<first id>.csv  one label per line, for a batch stored many at a time
    batch-<first id>.ids  the ids of that batch, one per line (the classic code assumed 0..N-1)
"""
from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image

from storage.core.backend import Backend
from storage.core.capabilities import Capabilities
from storage.errors import LabelError


class ClassicPngBackend(Backend):
    name = "classic-png"
    capabilities = Capabilities(channels=(1, 3, 4))  # what Pillow writes from an array

    def _open(self, create: bool) -> None:
        self._batch_labels: dict[int, int] | None = None

    def _close(self) -> None:
        pass

    def _write_one(self, key, image, label, overwrite):
        Image.fromarray(_pillow_shape(image)).save(self.path / f"{key}.png")
        with open(self.path / f"{key}.csv", "wt") as csvfile:
            writer = csv.writer(csvfile, delimiter=" ", quotechar="|", quoting=csv.QUOTE_MINIMAL)
            writer.writerow([label])

    def _write_many(self, ids, images, labels, overwrite):
        for key, image in zip(ids.tolist(), images):
            Image.fromarray(_pillow_shape(image)).save(self.path / f"{key}.png")
        first = int(ids[0])
        with open(self.path / f"batch-{first}.csv", "w") as csvfile:
            writer = csv.writer(csvfile, delimiter=" ", quotechar="|", quoting=csv.QUOTE_MINIMAL)
            for label in labels.tolist():
                writer.writerow([label])
        with open(self.path / f"batch-{first}.ids", "w") as idfile:
            idfile.write("".join(f"{key}\n" for key in ids.tolist()))
        self._batch_labels = None

    def _read_one(self, key):
        try:
            image = np.array(Image.open(self.path / f"{key}.png"))
        except FileNotFoundError:
            raise self._missing([key]) from None
        return image.reshape(self.image_shape), self._label(key)

    def _read_many(self, ids):
        images = []
        for key in ids.tolist():
            try:
                images.append(np.array(Image.open(self.path / f"{key}.png")))
            except FileNotFoundError:
                raise self._missing([key]) from None
        labels = [self._label(key) for key in ids.tolist()]
        return np.asarray(images).reshape(len(ids), *self.image_shape), np.asarray(labels, np.int64)

    def _label(self, key: int) -> int:
        single = self.path / f"{key}.csv"
        if single.exists():
            with open(single) as csvfile:
                return int(next(csv.reader(csvfile, delimiter=" ", quotechar="|"))[0])
        if self._batch_labels is None:
            self._batch_labels = self._load_batch_labels()
        return self._batch_labels[key]

    def _load_batch_labels(self) -> dict[int, int]:
        labels = {}
        for name in sorted(os.listdir(self.path)):
            if name.startswith("batch-") and name.endswith(".csv"):
                with open(self.path / name) as csvfile:
                    rows = [int(row[0]) for row in csv.reader(csvfile, delimiter=" ", quotechar="|")]
                with open(self.path / (name[:-4] + ".ids")) as idfile:
                    keys = [int(line) for line in idfile]
                labels.update(zip(keys, rows))
        return labels

    def _contains_many(self, ids):
        return np.array([(self.path / f"{key}.png").exists() for key in ids.tolist()], bool)

    def _ids(self):
        keys = [int(name[:-4]) for name in os.listdir(self.path)
                if name.endswith(".png") and name[:-4].isdigit()]
        return np.array(sorted(keys), dtype=np.int64)


def _pillow_shape(image):
    if image.shape[2] == 2:
        raise LabelError("classic-png stores greyscale, RGB or RGBA images, not 2 channels")
    return image[:, :, 0] if image.shape[2] == 1 else image
