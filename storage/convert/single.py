"""Convert a source into one store, in this process, batch by batch; resumable.

The store is built beside the destination under a temporary name (``.NAME.converting``),
one commit per batch, and renamed to the destination once it holds every image: a
stopped run leaves nothing at the destination that looks finished, and the next run
continues after the last id the temporary store holds. ``conversion.json`` in the store
records what was converted (the source's manifest hash), so a run never mixes sources.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from pathlib import Path

from storage import backend_of, open_store
from storage.convert.lease import Lease
from storage.convert.output import Output, batch_bytes
from storage.convert.shard import BATCH_BYTES
from storage.convert.sharded import ConversionResult
from storage.core.files import fsync_directory, write_json_atomically
from storage.errors import (
    IncompleteStoreError, StoreBusyError, StoreError, StoreExistsError, StoreNotFoundError)

RECORD = "conversion.json"  # in the store: source, manifest hash, ImageFolder classes
PARTIAL_SUFFIX = ".converting"


def partial_path(destination) -> Path:
    """Where a conversion into ``destination`` builds its store until it is complete."""
    destination = Path(os.path.abspath(destination))  # "out/" and "./out" name one place
    return destination.with_name(f".{destination.name}{PARTIAL_SUFFIX}")


def refuse_unfinished(path) -> None:
    """Name the interrupted conversion when ``path`` holds no store but one is on its way."""
    partial = partial_path(path)
    if not (Path(path) / "store.json").exists() and partial.exists():
        raise IncompleteStoreError(
            f"no store at '{path}' yet: a conversion into it is running or was interrupted "
            f"(its images so far are in '{partial.name}'); run the same `python -m storage "
            "convert` command again to finish it")


def convert_single(source, destination, store_format: str, output: Output = Output(), *,
                   resume: bool = True, progress=None) -> ConversionResult:
    info = source.info
    destination = Path(destination)
    started = time.monotonic()
    expected = {"source": info.description, "manifest_sha256": info.manifest_hash,
                "format": store_format, "count": info.count,
                "classes": list(info.classes) if info.classes is not None else None}
    if output.plan_field:  # absent for pixel arrays, as in records written before encoding
        expected["encoded"] = output.plan_field
    result = ConversionResult(str(destination), info.count)
    if _finished(destination, store_format, expected, resume):
        result.skipped = [destination.name]
        return result
    partial = partial_path(destination)
    if not resume and partial.exists():
        shutil.rmtree(partial)
    held = _start_or_resume(partial, store_format, output, expected)
    try:
        _append(source, partial, store_format, output, held, progress)
    except StoreBusyError:
        raise  # the temporary store is the other driver's
    except BaseException:
        if _empty(partial):
            shutil.rmtree(partial, ignore_errors=True)  # nothing committed: leave nothing
        raise
    _publish(partial, destination)
    result.built = [destination.name]
    result.seconds = time.monotonic() - started
    return result


def _append(source, partial: Path, store_format: str, output: Output, held: int,
            progress) -> None:
    """Write the source's images from id ``held`` on, a batch per commit."""
    info = source.info
    with Lease(partial), open_store(partial, store_format, "a") as store:
        if progress:
            progress.start(info.count, held)
        batch = max(1, BATCH_BYTES // math.prod(info.image_shape))
        next_id = held
        for images, labels in source.part(held, info.count).batches(batch, raw=output.raw):
            images = output.prepare(images)
            store.write_many(images, labels, ids=range(next_id, next_id + len(images)))
            next_id += len(images)
            if progress:
                progress.advance(len(images), batch_bytes(images))
        if progress:
            progress.finish()
        if next_id != info.count:
            raise StoreError(f"the source gave {next_id} images, not {info.count}: it changed "
                             "during the conversion; convert again with --no-resume")


def _finished(destination: Path, store_format: str, expected: dict, resume: bool) -> bool:
    """Whether ``destination`` already holds this conversion; refuses anything else there."""
    if not destination.exists() or (destination.is_dir() and not any(destination.iterdir())):
        return False
    try:
        written_by = backend_of(destination)
    except StoreNotFoundError:
        raise StoreExistsError(f"'{destination}' exists and is not a store; choose a new or "
                               "empty directory as the destination") from None
    record = _record(destination)
    if record is None:
        raise StoreExistsError(f"'{destination}' already holds a {written_by} store that no "
                               "conversion made; choose another destination")
    if resume and written_by == store_format and record == expected:
        return True
    if resume:
        raise StoreExistsError(
            f"'{destination}' holds a conversion of {record.get('source')!r} to {written_by}; "
            "choose another destination, or pass --no-resume to replace it")
    return False  # replaced once the new store is complete


def _start_or_resume(partial: Path, store_format: str, output: Output, expected: dict) -> int:
    """Create the temporary store, or check an earlier run's; how many images it holds."""
    if not (partial / "store.json").exists():  # creates it, or joins a racing creator
        open_store(partial, store_format, "a", encoding=output.encoding).close()
    written_by = backend_of(partial)
    record = _record(partial)
    if written_by == store_format:
        with open_store(partial, store_format, "a") as store:  # "r" may refuse an empty one
            ids = store.ids()
        if record is None and len(ids) == 0:
            write_json_atomically(partial / RECORD, expected)  # a run stopped before this
            record = expected
    if written_by != store_format or record != expected:
        source = (record or {}).get("source", "another source")
        raise StoreExistsError(
            f"'{partial}' holds an interrupted conversion of {source!r} to {written_by}; "
            "run that conversion again to finish it, or pass --no-resume to discard it")
    if len(ids) and ids[-1] != len(ids) - 1:
        raise StoreExistsError(f"'{partial}' holds ids other than 0..{len(ids) - 1}; it was "
                               "changed by hand; pass --no-resume to start over")
    return len(ids)


def _publish(partial: Path, destination: Path) -> None:
    """Rename the complete store to ``destination``, replacing an earlier conversion there."""
    replaced = None
    if destination.exists() and any(destination.iterdir()):  # --no-resume over a conversion
        replaced = destination.with_name(f".{destination.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.rename(destination, replaced)
    os.rename(partial, destination)  # an empty directory at the destination is replaced
    fsync_directory(destination.parent)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def _record(path: Path) -> dict | None:
    try:
        record = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _empty(path: Path) -> bool:
    """Whether the store at ``path`` holds no image; called while another error propagates."""
    try:
        with open_store(path, mode="a") as store:
            return len(store) == 0
    except Exception:  # noqa: BLE001 - the error being raised is the one to report
        return False
