"""Convert a source into one store, in this process, batch by batch; resumable.

Each batch is one commit of the store, so a stopped run keeps what it wrote; the next
run checks ``conversion.json`` (the source's manifest hash) and continues after the
last id held.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from storage import backend_of, open_store
from storage.convert.lease import Lease
from storage.convert.shard import BATCH_BYTES
from storage.convert.sharded import ConversionResult
from storage.errors import StoreBusyError, StoreError, StoreExistsError, StoreNotFoundError
from storage.core.files import write_json_atomically

RECORD = "conversion.json"  # in the store: source, manifest hash, ImageFolder classes


def convert_single(source, destination, store_format: str, *, resume: bool = True,
                   progress=None) -> ConversionResult:
    info = source.info
    destination = Path(destination)
    started = time.monotonic()
    expected = {"source": info.description, "manifest_sha256": info.manifest_hash,
                "format": store_format, "count": info.count,
                "classes": list(info.classes) if info.classes is not None else None}
    held = _existing(destination, store_format, expected, resume)
    if held is None:
        open_store(destination, store_format, "w").close()
        write_json_atomically(destination / RECORD, expected)
        held = 0
    result = ConversionResult(str(destination), info.count)
    try:
        next_id = _append(source, destination, store_format, held, progress)
    except StoreBusyError:
        raise  # the store is the other driver's
    except BaseException:
        if held == 0 and _empty(destination):
            shutil.rmtree(destination, ignore_errors=True)  # nothing committed: leave nothing
        raise
    result.built = [destination.name] if next_id > held else []
    result.skipped = [destination.name] if next_id == held else []
    result.seconds = time.monotonic() - started
    return result


def _append(source, destination: Path, store_format: str, held: int, progress) -> int:
    """Write the source's images from id ``held`` on, a batch per commit; the next id."""
    info = source.info
    with Lease(destination), open_store(destination, store_format, "a") as store:
        if progress:
            progress.start(info.count, held)
        batch = max(1, BATCH_BYTES // math.prod(info.image_shape))
        next_id = held
        for images, labels in source.part(held, info.count).batches(batch):
            store.write_many(images, labels, ids=range(next_id, next_id + len(images)))
            next_id += len(images)
            if progress:
                progress.advance(len(images), images.nbytes)
        if progress:
            progress.finish()
    return next_id


def _empty(destination: Path) -> bool:
    try:
        with open_store(destination) as store:
            return len(store) == 0
    except StoreError:
        return False


def _existing(destination: Path, store_format: str, expected: dict, resume: bool) -> int | None:
    """How many images an earlier run of this conversion stored; None when starting anew."""
    try:
        written_by = backend_of(destination)
    except StoreNotFoundError:
        return None
    try:
        record = json.loads((destination / RECORD).read_text())
    except (OSError, ValueError):
        record = None
    if record is None:
        raise StoreExistsError(f"'{destination}' already holds a {written_by} store that no "
                               "conversion made; choose another destination")
    if not resume or written_by != store_format or record != expected:
        if resume:
            raise StoreExistsError(
                f"'{destination}' holds a conversion of {record.get('source')!r} to "
                f"{written_by}; choose another destination, or pass --no-resume to replace it")
        shutil.rmtree(destination)
        return None
    with open_store(destination) as store:
        ids = store.ids()
    if len(ids) and ids[-1] != len(ids) - 1:
        raise StoreExistsError(f"'{destination}' holds ids other than 0..{len(ids) - 1}; it "
                               "was changed after conversion; pass --no-resume to replace it")
    return len(ids)
