"""``python -m storage``: convert, info and verify from the command line.

Errors are one line saying what to do, exit status 2; ``verify`` exits 1 when it finds
damage; Ctrl-C stops a conversion cleanly (exit 130) and the same command resumes it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

from storage.convert.output import ENCODED_CHOICES
from storage.errors import StoreError

EXIT_DAMAGED, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130
TRACEBACK_ENV = "STORAGE_TRACEBACK"  # set to 1 to see the traceback behind an error
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", re.IGNORECASE)


def shard_size(text: str) -> int:
    """``256MiB``, ``1GB``, ``500k``, ``4096`` as bytes."""
    found = _SIZE.fullmatch(text.strip())
    if not found or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write it like 256MiB or 1GB")
    number, unit, binary = found.groups()
    base = 1024 if binary or not unit else 1000
    return int(float(number) * base ** " kmgt".index(unit.lower() or " "))


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m storage", description=__doc__.split("\n")[0])
    commands = main.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert a data set or store into a store")
    convert.add_argument("source", help="CIFAR folder or .tar.gz, ImageFolder, or a store")
    convert.add_argument("destination", help="the new store's directory")
    convert.add_argument("--format", required=True, help="lmdb, hdf5, png, ...")
    sharding = convert.add_mutually_exclusive_group()
    sharding.add_argument("--shards", type=positive, help="a sharded store of K shards")
    sharding.add_argument("--shard-size", type=shard_size,
                          help="a sharded store of shards of about this size (256MiB)")
    convert.add_argument("--scheduler", help="tcp://HOST:PORT of a running Dask scheduler "
                         "(default: $DASK_SCHEDULER_ADDRESS, else one worker per core here)")
    convert.add_argument("--workers", type=positive, help="local Dask workers (default: cores)")
    convert.add_argument("--encoded", choices=ENCODED_CHOICES, default="none",
                         help="none: pixel arrays (default; an encoded source is decoded); "
                         "jpeg, png: encode each image (JPEG quality 90); keep: copy an "
                         "encoded source's bytes unchanged")
    convert.add_argument("--split", default="train", choices=("train", "test", "all"),
                         help="CIFAR split to convert (default: train)")
    convert.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                         help="continue an interrupted conversion (default); --no-resume "
                         "replaces what an earlier conversion left in DESTINATION")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")

    info = commands.add_parser("info", help="what a store holds")
    info.add_argument("store")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")

    verify = commands.add_parser("verify", help="read every image and check every record")
    verify.add_argument("store")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    return main


def main(argv=None) -> int:
    arguments = parser().parse_args(argv)
    try:
        return _COMMANDS[arguments.command](arguments)
    except KeyboardInterrupt:
        print("interrupted; what was committed is kept: run the same command again to "
              "continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StoreError as error:
        return _fail(error)
    except Exception as error:  # a bug or an unmapped library error: still one line
        return _fail(error, internal=True)


def _fail(error: BaseException, internal: bool = False) -> int:
    if os.environ.get(TRACEBACK_ENV):
        raise error
    kind = f"internal error ({type(error).__name__})" if internal else "error"
    message = " ".join(str(error).split())
    print(f"{kind}: {message}" + (f" (set {TRACEBACK_ENV}=1 for details)" if internal else ""),
          file=sys.stderr)
    return EXIT_ERROR


def _convert(arguments) -> int:
    from storage.convert import convert
    from storage.convert.progress import Progress

    # Dask reports re-run tasks as warnings; the run recovers from them, the user need not act.
    import distributed  # noqa: F401 - its import configures its loggers; quiet them after

    for name in ("distributed", "distributed.client", "distributed.worker",
                 "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    progress = Progress("convert", enabled=False if arguments.quiet else None)
    result = convert(arguments.source, arguments.destination, arguments.format,
                     shards=arguments.shards, shard_size=arguments.shard_size,
                     scheduler=arguments.scheduler, workers=arguments.workers,
                     resume=arguments.resume, split=arguments.split,
                     encoded=arguments.encoded, progress=progress)
    if not result.built:
        print(f"'{result.destination}' already holds this conversion ({result.count:,} images); "
              "nothing to do")
    else:
        print(f"converted {result.count:,} images into '{result.destination}' in "
              f"{result.seconds:.1f} s: built {len(result.built)}, kept {len(result.skipped)} "
              "from an earlier run")
    return 0


def _info(arguments) -> int:
    from storage.cli.info import format_info, store_info

    facts = store_info(arguments.store)
    print(json.dumps(facts, indent=1) if arguments.json else format_info(facts))
    return 0


def _verify(arguments) -> int:
    from storage.cli.verify import id_ranges, verify_store
    from storage.convert.progress import Progress

    report = verify_store(arguments.store,
                          Progress("verify", enabled=False if arguments.quiet else None))
    rate = report.count / report.seconds if report.seconds else 0
    if report.clean:
        print(f"'{report.path}': {report.count:,} images verified, clean "
              f"({report.seconds:.1f} s, {rate:,.0f} images/s)")
        return 0
    if report.damaged:
        print(f"'{report.path}': DAMAGED: {len(report.damaged):,} of {report.count:,} images "
              f"fail their checks")
    else:
        print(f"'{report.path}': DAMAGED: {len(report.problems)} integrity record(s) fail")
    if report.damaged:
        print(f"damaged ids: {id_ranges(report.damaged)}")
    for problem in report.problems:
        print(f"problem: {problem}")
    return EXIT_DAMAGED


_COMMANDS = {"convert": _convert, "info": _info, "verify": _verify}
