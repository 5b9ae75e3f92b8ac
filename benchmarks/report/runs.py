"""Saved pytest-benchmark runs, read into one Result per (backend, operation, N) or refused."""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.operations import NAMES
from benchmarks.report.styles import backend_order

# The suite's operations, in the order a reader meets them; others found in a run follow.
KNOWN_OPERATIONS = NAMES  # benchmarks/operations.py
_NAME = re.compile(r"^test_(?P<operation>\w+?)\[(?P<param>[^\]]+)\]$")
_PARAM = re.compile(r"^(?P<backend>.+?)(?:-(?P<side>\d+)px)?-N=(?P<n>\d+)$")
SMALLEST_SIDE = 32  # images of other sides are reported as operations of their own
_SIDED = re.compile(r"^(?P<operation>.+)_(?P<side>\d+)px$")
_HOW_TO_MAKE = "write one with: pytest benchmarks --benchmark-only --benchmark-json=RUN.json"


class ReportInputError(ValueError):
    """A file the report cannot use; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class Result:
    backend: str
    operation: str
    n: int
    median: float  # seconds per round, as are q1 and q3
    q1: float
    q3: float
    rounds: int
    images_per_s: float | None = None
    mb_per_s: float | None = None
    bytes_on_disk: int | None = None
    raw_pixel_bytes: int | None = None
    dataset: str | None = None
    image_shape: tuple[int, ...] | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return self.backend, self.operation, self.n

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def images_per_round(self) -> float | None:
        """N for the bulk operations, 1 for the single ones: what images/s was counted over."""
        return self.images_per_s * self.median if self.images_per_s else None


@dataclass
class Run:
    label: str
    source: str
    results: dict[tuple[str, str, int], Result]
    machine: dict = field(default_factory=dict)
    commit: dict = field(default_factory=dict)
    datetime: str | None = None
    skipped: list[str] = field(default_factory=list)  # benchmarks left out, and why

    @property
    def operations(self) -> list[str]:
        found = {result.operation for result in self.results.values()}
        return ([op for op in KNOWN_OPERATIONS if op in found]
                + sorted(found - set(KNOWN_OPERATIONS)))

    @property
    def backends(self) -> list[str]:
        return backend_order(result.backend for result in self.results.values())

    @property
    def sizes(self) -> list[int]:
        return sorted({result.n for result in self.results.values()})

    @property
    def sides(self) -> list[int]:
        """Image sides in px the run measured (other sides than 32 are named read_many_256px)."""
        return sorted({split_side(result.operation)[1] for result in self.results.values()})

    @property
    def datasets(self) -> list[str]:
        return sorted({result.dataset for result in self.results.values() if result.dataset})

    def series(self, backend: str, operation: str) -> list[Result]:
        """The results of one backend and operation, by increasing N."""
        return [self.results[key] for key in sorted(self.results)
                if key[0] == backend and key[1] == operation]

    def missing(self) -> list[tuple[str, str, int]]:
        """(backend, operation, N) absent though the operation ran at that N (a failed
        benchmark, a partial run), where the backend ran that operation at another N, or
        ran several operations, one of those that several backends ran. A benchmark of its
        own (a control with one backend and one operation) implies nothing."""
        keys = set(self.results)
        ran = {(operation, n) for _, operation, n in keys}
        pairs = {(backend, operation) for backend, operation, _ in keys}
        operations_of = Counter(backend for backend, _ in pairs)
        backends_of = Counter(operation for _, operation in pairs)
        expected = pairs | {(backend, operation) for backend in self.backends
                            for operation in self.operations
                            if operations_of[backend] > 1 and backends_of[operation] > 1}
        return [(backend, operation, n) for operation in self.operations
                for n in self.sizes for backend in self.backends
                if (backend, operation) in expected and (operation, n) in ran
                and (backend, operation, n) not in keys]


def split_side(operation: str) -> tuple[str, int]:
    """``read_many_256px`` -> (``read_many``, 256); a plain name is 32 px."""
    match = _SIDED.match(operation)
    return (match["operation"], int(match["side"])) if match else (operation, SMALLEST_SIDE)


def load_runs(paths: list[str | Path], merge: bool = False) -> list[Run]:
    runs = [load_run(path) for path in paths]
    if merge and len(runs) > 1:
        return [merge_runs(runs)]
    _unique_labels(runs)
    return runs


def load_run(path: str | Path) -> Run:
    path = Path(path)
    data = _read_json(path)
    benchmarks = data["benchmarks"]
    results: dict[tuple[str, str, int], Result] = {}
    skipped: list[str] = []
    for bench in benchmarks:
        result, problem = _result(bench)
        if problem:
            skipped.append(problem)
            continue
        if result.key in results:
            skipped.append(f"{_name(bench)}: a second result for {result.key}; the later is kept")
        results[result.key] = result
    if not results:
        raise ReportInputError(
            f"{path}: none of its {len(benchmarks)} benchmarks can be used ({skipped[0]}); "
            "the report needs the operation, backend and N of each benchmark (extra_info "
            "'operation', 'backend', 'N', or names like test_read_many[lmdb-N=1000]) and its "
            f"timing stats; {_HOW_TO_MAKE}")
    return Run(label=_label(path.stem), source=str(path), results=results,
               machine=_dict(data.get("machine_info")), commit=_dict(data.get("commit_info")),
               datetime=data.get("datetime") if isinstance(data.get("datetime"), str) else None,
               skipped=skipped)


def merge_runs(runs: list[Run]) -> Run:
    """One run from several (e.g. a suite run in parts); a later file wins a duplicate."""
    results: dict[tuple[str, str, int], Result] = {}
    for run in runs:
        results.update(run.results)
    first = runs[0]
    return Run(label="merged", source=", ".join(run.source for run in runs), results=results,
               machine=first.machine, commit=first.commit, datetime=first.datetime,
               skipped=[problem for run in runs for problem in run.skipped])


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportInputError(f"{path}: no such file; {_HOW_TO_MAKE}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReportInputError(f"{path}: cannot read it as text ({error})") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ReportInputError(
            f"{path} is not JSON ({error}); expected pytest-benchmark JSON, {_HOW_TO_MAKE}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportInputError(
            f"{path} is JSON but not pytest-benchmark JSON (no 'benchmarks' list); {_HOW_TO_MAKE}")
    if not data["benchmarks"]:
        raise ReportInputError(
            f"{path} holds an empty run (its 'benchmarks' list is empty): did the pytest run "
            "select any benchmark, and was it run with --benchmark-only or --benchmark-enable?")
    return data


def _result(bench) -> tuple[Result | None, str | None]:
    """The Result of one benchmark entry, or why it cannot be used."""
    if not isinstance(bench, dict):
        return None, f"an entry that is not an object: {str(bench)[:60]!r}"
    identity = _identify(bench)
    if identity is None:
        return None, f"{_name(bench)}: no operation, backend and N in extra_info, params or name"
    stats = bench.get("stats")
    numbers = {key: _number(stats.get(key)) if isinstance(stats, dict) else None
               for key in ("median", "q1", "q3", "rounds")}
    if numbers["median"] is None or numbers["median"] <= 0:
        return None, f"{_name(bench)}: no timing stats (a positive stats.median)"
    median = numbers["median"]
    info = _dict(bench.get("extra_info"))
    shape = info.get("image_shape")
    return Result(
        *identity, median=median,
        q1=numbers["q1"] if numbers["q1"] is not None else median,
        q3=numbers["q3"] if numbers["q3"] is not None else median,
        rounds=int(numbers["rounds"] or 0),
        images_per_s=_number(info.get("images_per_s")),
        mb_per_s=_number(info.get("MB_per_s")),
        bytes_on_disk=_integer(info.get("bytes_on_disk")),
        raw_pixel_bytes=_integer(info.get("raw_pixel_bytes")),
        dataset=info.get("dataset") if isinstance(info.get("dataset"), str) else None,
        image_shape=tuple(shape) if isinstance(shape, list) and all(
            isinstance(side, int) for side in shape) else None,
    ), None


def _identify(bench: dict) -> tuple[str, str, int] | None:
    """(backend, operation, N): extra_info first, then pytest's params, then the name."""
    info, params = _dict(bench.get("extra_info")), _dict(bench.get("params"))
    named = _NAME.match(str(bench.get("name", "")))
    param = _PARAM.match(str(bench.get("param") or (named and named["param"]) or ""))
    backend = _first_text(info.get("backend"), params.get("storage_backend"),
                          params.get("access_backend"),
                          param and param["backend"])
    operation = _first_text(info.get("operation"), named and named["operation"])
    n = next((value for value in (_integer(info.get("N")), _integer(params.get("storage_n")),
                                  _integer(param and param["n"])) if value), None)
    side = next((value for value in (_integer(info.get("side")),
                                     _integer(params.get("storage_side")),
                                     _integer(param and param["side"])) if value), SMALLEST_SIDE)
    if operation and side != SMALLEST_SIDE:  # its own figures and tables: read_many_256px
        operation = f"{operation}_{side}px"
    if backend and operation and n and n > 0:
        return backend, operation, n
    return None


def _unique_labels(runs: list[Run]) -> None:
    """Give runs from files with the same name (a/run.json, b/run.json) distinct labels."""
    taken: set[str] = set()
    for run in runs:
        label, count = run.label, 1
        while label in taken:
            count += 1
            label = f"{run.label}-{count}"
        run.label = label
        taken.add(label)


def _label(stem: str) -> str:
    """A run's name that is safe as a folder name and in markdown."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "run"


def _name(bench: dict) -> str:
    return str(bench.get("fullname") or bench.get("name") or "a benchmark without a name")


def _first_text(*values) -> str | None:
    return next((value for value in values if isinstance(value, str) and value), None)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _integer(value) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None
