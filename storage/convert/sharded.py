"""Convert a source into a sharded store: plan, clean up, build what is missing, commit.

The run holds the destination's lease, removes what an earlier run left half-done
(temporaries, shards without a marker), builds only the shards without a valid marker,
and writes ``index.json`` last. Killed at any point, it leaves committed shards that the
next run keeps; with the index in place, a re-run has nothing to do.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from storage.convert.lease import Lease
from storage.convert.output import Output
from storage.convert.shard import LOCK_SUFFIX, ShardTask, shard_lock
from storage.errors import (
    CorruptStoreError, EncodingMismatchError, NotAStoreError, StoreBusyError, StoreExistsError,
    WrongBackendError)
from storage.core.files import fsync_directory
from storage.core.marker import read_marker as read_store_marker
from storage.sharded.backend import ShardedBackend
from storage.sharded.index import (
    INDEX, MARKER_SUFFIX, TEMPORARY_PREFIX, ShardIndex, ShardPlan, is_shard_name,
    marker_plan, read_index, read_marker, write_index)


@dataclass
class ConversionResult:
    destination: str
    count: int
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def plan_shards(count: int, image_bytes: int, shard_format: str, source_hash: str, *,
                shards: int | None = None, shard_size: int | None = None,
                encoded: str | None = None) -> list[ShardPlan]:
    """Contiguous id ranges of near-equal size: ``shards`` of them, or enough for the size."""
    if shards is None:
        shards = math.ceil(count * image_bytes / shard_size)
    shards = max(1, min(int(shards), count))
    plans, start = [], 0
    for number in range(shards):
        size = count // shards + (number < count % shards)
        plans.append(ShardPlan(number, start, size, shard_format, source_hash, encoded))
        start += size
    return plans


def convert_sharded(source, destination, shard_format: str, output: Output, engine, *,
                    shards: int | None = None, shard_size: int | None = None,
                    resume: bool = True, progress=None) -> ConversionResult:
    """Build the shards missing from ``destination`` on ``engine()``'s executor, then commit."""
    info = source.info
    destination = Path(destination)
    plans = plan_shards(info.count, output.estimate_image_bytes(source), shard_format,
                        info.manifest_hash, shards=shards, shard_size=shard_size,
                        encoded=output.plan_field)
    fresh = not destination.exists() or not any(destination.iterdir())
    _prepare(destination, info.image_shape, output.encoding)
    try:
        return _run(destination, plans, source, engine, output, resume, progress)
    except StoreBusyError:
        raise  # the directory is the other driver's
    except BaseException:
        if fresh and not any(destination.glob(f"shard-*{MARKER_SUFFIX}")):
            shutil.rmtree(destination, ignore_errors=True)  # nothing committed: leave nothing
        raise


def _run(destination: Path, plans, source, engine, output: Output, resume: bool,
         progress) -> ConversionResult:
    info = source.info
    started = time.monotonic()
    result = ConversionResult(str(destination), info.count)
    with Lease(destination):
        if _committed(destination, plans, resume):
            result.skipped = [plan.name for plan in plans]
            return result
        done = _clean(destination, plans, resume)
        result.skipped = sorted(done)
        tasks = [ShardTask(plan, source.part(plan.start, plan.stop), str(destination),
                           math.prod(info.image_shape), output)
                 for plan in plans if plan.name not in done]
        if progress:
            progress.start(info.count, sum(record.count for record in done.values()))
        if tasks:  # a re-run with every shard in place starts no cluster
            with engine() as executor:
                for record in executor.run(tasks):
                    done[record.name] = record
                    result.built.append(record.name)
                    if progress:
                        progress.advance(record.count, record.bytes)
        if progress:
            progress.finish()
        _remove_temporaries(destination)  # left by tasks of workers that died
        _commit(destination, plans, done, info, output)
        for lock in destination.glob(f"shard-*{LOCK_SUFFIX}"):
            lock.unlink(missing_ok=True)  # every task of this conversion has ended
    result.built.sort()
    result.seconds = time.monotonic() - started
    return result


def _prepare(destination: Path, image_shape, encoding: str | None) -> None:
    try:
        ShardedBackend.prepare(destination, image_shape, encoding)
    except EncodingMismatchError:
        raise StoreExistsError(
            f"'{destination}' holds a sharded store of "
            f"{_encoding_of(destination) or 'pixel arrays'}, not of "
            f"{encoding or 'pixel arrays'}; choose another destination") from None
    except WrongBackendError as error:
        raise StoreExistsError(f"'{destination}' already holds another store ({error}); "
                               "choose another destination") from None
    except NotAStoreError as error:
        raise StoreExistsError(f"{error}") from None


def _encoding_of(destination: Path) -> str | None:
    encoding = read_store_marker(destination).get("encoding")
    return f"encoded {encoding} images" if encoding else None


def _committed(destination: Path, plans, resume: bool) -> bool:
    """Whether the index already commits exactly this conversion; removes it if replacing."""
    if not (destination / INDEX).exists():
        return False
    try:
        index = read_index(destination)
        same = ([(shard.name, shard.start, shard.count) for shard in index.shards]
                == [(plan.name, plan.start, plan.count) for plan in plans]
                and index.shard_format == plans[0].shard_format
                and index.encoded == plans[0].encoded
                and index.source_hash == plans[0].source_hash)
    except CorruptStoreError:
        same = False
    if same:
        return True
    if resume:
        raise StoreExistsError(
            f"'{destination}' holds a finished conversion of another source, format or "
            "shard count; choose another destination, or pass --no-resume to replace it")
    (destination / INDEX).unlink()  # readers now refuse the directory until we commit
    fsync_directory(destination)
    return False


def _clean(destination: Path, plans, resume: bool) -> dict:
    """Remove leftovers; return the records of shards committed by earlier runs.

    Each shard is looked at under its lock: a task of a stopped run may still be building it.
    """
    wanted = {plan.name: plan for plan in plans}
    if resume:  # refuse part of another conversion before anything is removed
        for marker in sorted(destination.glob(f"shard-*{MARKER_SUFFIX}")):
            name = marker.name.removesuffix(MARKER_SUFFIX)
            plan = wanted.get(name)
            if is_shard_name(name) and (plan is None or read_marker(destination, plan) is None):
                _refuse_foreign(destination, marker, plans[0])
    done = {}
    for name in sorted(set(wanted) | _shards_named_in(destination)):
        with shard_lock(destination, name):
            plan = wanted.get(name)
            record = read_marker(destination, plan) if resume and plan else None
            if record is not None and (destination / name).is_dir():
                done[name] = record
            # A kept shard loses only its temporaries; any other also its shard and marker
            # (none, a damaged one, another plan's, or with --no-resume any).
            for entry in _leftovers_of(destination, name, shard_too=name not in done):
                _remove(entry)
    _remove_loose_temporaries(destination)
    fsync_directory(destination)
    return done


def _shards_named_in(destination: Path) -> set[str]:
    """The shards that entries of ``destination`` belong to."""
    return {name for name in map(_shard_of, destination.iterdir()) if name}


def _shard_of(entry: Path) -> str | None:
    """The shard an entry belongs to: the shard itself, its marker, lock or temporary."""
    name = entry.name.removeprefix(TEMPORARY_PREFIX)
    if name != entry.name:
        name = name.rsplit("-", 1)[0]  # .tmp-<shard>-<uuid>
    name = name.removesuffix(MARKER_SUFFIX).removesuffix(LOCK_SUFFIX)
    return name if is_shard_name(name) else None


def _leftovers_of(destination: Path, name: str, shard_too: bool = False) -> list[Path]:
    entries = list(destination.glob(f"{TEMPORARY_PREFIX}{name}-*"))
    if shard_too:
        entries += [destination / name, destination / f"{name}{MARKER_SUFFIX}"]
    return [entry for entry in entries if entry.exists() or entry.is_symlink()]


def _refuse_foreign(destination: Path, marker: Path, plan: ShardPlan) -> None:
    """An intact marker of another conversion: never mix two in one store."""
    previous = marker_plan(marker)
    if previous is None:
        return  # damaged: that shard is rebuilt
    if (previous.get("source_hash"), previous.get("shard_format"), previous.get("encoded")) != (
            plan.source_hash, plan.shard_format, plan.encoded):
        raise StoreExistsError(
            f"'{destination}' holds part of a conversion of another source, to another "
            "format or with another --encoded; choose another destination, or pass --no-resume to start over")
    raise StoreExistsError(
        f"'{destination}' holds part of a conversion into another number of shards; "
        "pass the same --shards/--shard-size as before, or --no-resume to start over")


def _remove_temporaries(destination: Path) -> None:
    """Temporaries of tasks that died; a shard's are removed under its lock."""
    for name in sorted(_shards_named_in(destination)):
        with shard_lock(destination, name):
            for entry in _leftovers_of(destination, name):
                _remove(entry)
    _remove_loose_temporaries(destination)


def _remove_loose_temporaries(destination: Path) -> None:
    """Temporaries that belong to no shard."""
    for entry in destination.glob(f"{TEMPORARY_PREFIX}*"):
        if _shard_of(entry) is None:
            _remove(entry)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _commit(destination: Path, plans, done: dict, info, output: Output) -> None:
    missing = [plan.name for plan in plans
               if plan.name not in done or not (destination / plan.name).is_dir()]
    if missing:
        raise CorruptStoreError(f"shards {missing[:5]} of '{destination}' were not built; "
                                "run the conversion again")
    write_index(destination, ShardIndex(
        shard_format=plans[0].shard_format, count=info.count,
        image_shape=None if output.encoding else info.image_shape,
        source_hash=info.manifest_hash, source=info.description, classes=info.classes,
        shards=tuple(done[plan.name] for plan in plans), encoding=output.encoding,
        encoded=output.plan_field))
