"""Read, validate and merge pytest-benchmark JSON files that keep every round's time.

A file from ``--benchmark-json`` (or saved with ``--benchmark-save-data``) has
``stats.data``: one time per round. The gate merges the files of one side's
invocations into one such file; ``extra_info["gate_blocks"]`` then records which
alternating pair each run of rounds came from, so that ``compare`` can pair
base and head rounds measured side by side.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.gate.errors import InputError

BLOCKS_KEY = "gate_blocks"
CONTROL_OPERATION = "control"
_FORMAT_HINT = "write one with `pytest --benchmark-only --benchmark-json=PATH`"
_DATA_HINT = ("save runs with `--benchmark-save-data`, or write them with "
              "`--benchmark-json=PATH`, which keeps every round")


@dataclass(frozen=True)
class Block:
    """The rounds of one pytest invocation; ``pair`` numbers the alternating round it ran in."""
    times: np.ndarray
    pair: int | None = None


@dataclass(frozen=True)
class Benchmark:
    fullname: str
    group: str | None
    extra_info: dict
    blocks: tuple[Block, ...]

    @property
    def times(self) -> np.ndarray:
        return np.concatenate([block.times for block in self.blocks])

    @property
    def is_control(self) -> bool:
        return self.extra_info.get("operation") == CONTROL_OPERATION


def load_run(path) -> dict[str, Benchmark]:
    """The benchmarks of one results file by full name, in file order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read '{path}': {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"'{path}' is not JSON ({error}); {_FORMAT_HINT}") from None
    return parse_run(data, str(path))


def parse_run(data, source: str) -> dict[str, Benchmark]:
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list):
        raise InputError(f"'{source}' is not a pytest-benchmark results file "
                         f"(no 'benchmarks' list); {_FORMAT_HINT}")
    if not benchmarks:
        raise InputError(f"'{source}' holds no benchmarks; check the run's -k or --storage-* "
                         "filters")
    run: dict[str, Benchmark] = {}
    for position, entry in enumerate(benchmarks, 1):
        benchmark = _parse_benchmark(entry, f"benchmark #{position} in '{source}'")
        if benchmark.fullname in run:
            raise InputError(f"'{source}' holds {benchmark.fullname!r} twice; merge runs with "
                             "`python -m benchmarks.gate run`, not by hand")
        run[benchmark.fullname] = benchmark
    return run


def _parse_benchmark(entry, where: str) -> Benchmark:
    if not isinstance(entry, dict) or not isinstance(entry.get("stats"), dict):
        raise InputError(f"{where} has no 'stats'; this is not pytest-benchmark's format")
    fullname = entry.get("fullname") or entry.get("name")
    if not isinstance(fullname, str):
        raise InputError(f"{where} has no 'fullname'; this is not pytest-benchmark's format")
    data = entry["stats"].get("data")
    if data is None:
        raise InputError(f"{where} ({fullname}) has no per-round times (stats.data); {_DATA_HINT}")
    times = _round_times(data, f"{where} ({fullname})")
    extra_info = entry.get("extra_info") if isinstance(entry.get("extra_info"), dict) else {}
    blocks = _split_blocks(times, extra_info.get(BLOCKS_KEY), f"{where} ({fullname})")
    group = entry.get("group") if isinstance(entry.get("group"), str) else None
    return Benchmark(fullname, group, extra_info, blocks)


def _round_times(data, where: str) -> np.ndarray:
    if not isinstance(data, list) or not data:
        raise InputError(f"{where}: stats.data must be a non-empty list of round times")
    if not all(isinstance(time, (int, float)) and not isinstance(time, bool)
               and math.isfinite(time) and time > 0 for time in data):
        raise InputError(f"{where}: stats.data holds something other than positive times")
    return np.asarray(data, dtype=np.float64)


def _split_blocks(times: np.ndarray, layout, where: str) -> tuple[Block, ...]:
    if layout is None:
        return (Block(times),)
    try:
        sizes = [int(block["rounds"]) for block in layout]
        pairs = [int(block["pair"]) for block in layout]
    except (TypeError, KeyError, ValueError):
        raise InputError(f"{where}: extra_info.{BLOCKS_KEY} is malformed") from None
    if sum(sizes) != len(times) or min(sizes, default=0) < 1:
        raise InputError(f"{where}: extra_info.{BLOCKS_KEY} counts {sum(sizes)} rounds but "
                         f"stats.data holds {len(times)}")
    bounds = np.cumsum([0, *sizes])
    return tuple(Block(times[start:stop], pair)
                 for start, stop, pair in zip(bounds[:-1], bounds[1:], pairs))


def merge_runs(invocations: list[tuple[int, dict]], gate_info: dict) -> dict:
    """One results file from one side's invocations, given as (pair, parsed JSON).

    Rounds are concatenated in pair order, the summary statistics recomputed so that
    ``pytest-benchmark compare`` shows the merged numbers, and each benchmark's
    ``extra_info["gate_blocks"]`` says how many rounds each pair contributed.
    """
    from pytest_benchmark.stats import Stats  # the same statistics pytest-benchmark reports

    if not invocations:
        raise ValueError("nothing to merge")
    merged: dict[str, dict] = {}
    rounds: dict[str, list[float]] = {}
    for pair, data in sorted(invocations, key=lambda item: item[0]):
        for entry in data["benchmarks"]:
            name = entry["fullname"]
            if name not in merged:
                merged[name] = copy.deepcopy(entry)
                merged[name].setdefault("extra_info", {})[BLOCKS_KEY] = []
                rounds[name] = []
            rounds[name].extend(entry["stats"]["data"])
            merged[name]["extra_info"][BLOCKS_KEY].append(
                {"pair": pair, "rounds": len(entry["stats"]["data"])})
    for name, entry in merged.items():
        stats = Stats()
        for time in rounds[name]:
            stats.update(time)
        entry["stats"] = {**stats.as_dict(), "data": stats.data,
                          "iterations": entry["stats"].get("iterations", 1)}
    first = invocations[0][1]
    return {key: first[key] for key in ("machine_info", "commit_info", "datetime", "version")
            if key in first} | {"gate": gate_info, "benchmarks": list(merged.values())}
