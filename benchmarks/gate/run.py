"""The alternating measurement: base and head in turns in one job, then merged and judged.

Each pair runs pytest once for each side, the order flipping from pair to pair,
so that a machine speeding up or slowing down during the job affects both
sides alike; the pairs are what ``stats`` compares.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.gate import interpreters, pbjson, report, selection, verdict, worktrees
from benchmarks.gate.errors import RunError
from benchmarks.gate.profiles import Profile

SIDES = ("base", "head")
MIN_PAIRS = 3  # fewer pairs cannot be judged as pairs
CONTROL_FILE = Path(__file__).resolve().parents[1] / "test_control.py"


@dataclass(frozen=True)
class Side:
    name: str
    revision: str
    worktree: Path
    python: str


@dataclass(frozen=True)
class GateRun:
    """What ``run`` asked for and what it measured."""
    base_ref: str
    head_ref: str
    profile: Profile
    out_dir: Path
    threshold: float
    confidence: float
    pairs: int
    max_minutes: float
    backends: tuple[str, ...] | None = None
    install: bool = True
    stop_early: bool = True  # once every benchmark is surely within the threshold


def order(pair: int) -> tuple[str, str]:
    """Base first in even pairs, head first in odd ones."""
    return SIDES if pair % 2 == 0 else SIDES[::-1]


def alternate(measure: Callable[[str, int], dict], pairs: int, budget_s: float,
              clock: Callable[[], float] = time.monotonic,
              log: Callable[[str], None] = print,
              settled: Callable[[dict], bool] | None = None) -> dict[str, list[tuple[int, dict]]]:
    """Run ``measure(side, pair)`` for each side of each pair; stop early at the budget.

    After ``MIN_PAIRS`` pairs, stop when the next pair, taking as long as the last
    one did, would end past ``budget_s``, or when ``settled(results)`` says that
    more pairs cannot change the verdict.
    """
    results: dict[str, list[tuple[int, dict]]] = {side: [] for side in SIDES}
    started = clock()
    for pair in range(pairs):
        pair_started = clock()
        for side in order(pair):
            results[side].append((pair, measure(side, pair)))
        now = clock()
        log(f"gate: pair {pair + 1}/{pairs} ({' then '.join(order(pair))}) "
            f"took {now - pair_started:.0f} s")
        if pair + 1 < MIN_PAIRS or pair + 1 >= pairs:
            continue
        if now - started + (now - pair_started) > budget_s:
            log(f"gate: stopping after {pair + 1} pairs: another would pass the "
                f"{budget_s / 60:.0f}-minute budget")
            break
        if settled and settled(results):
            log(f"gate: stopping after {pair + 1} pairs: every benchmark is surely within "
                "the threshold")
            break
    return results


def pytest_command(side: Side, args: list[str], json_path: Path, basetemp: Path) -> list[str]:
    return [side.python, "-m", "pytest", *args, "--benchmark-only",
            f"--benchmark-json={json_path}", f"--basetemp={basetemp}",
            "-p", "no:cacheprovider", "-q", "--no-header"]


def pytest_child_env() -> dict[str, str]:
    """The environment for a pytest run of its own, started from this process.

    Without PYTHONPATH, so that a worktree's own code is imported, never the checkout
    the gate runs from; without pytest-xdist's worker variables, which would make
    pytest-benchmark in the child refuse to measure.
    """
    return {key: value for key, value in os.environ.items()
            if key != "PYTHONPATH" and not key.startswith("PYTEST_XDIST_")}


def measure_once(side: Side, args: list[str], raw_dir: Path, pair: int, scratch: Path) -> dict:
    """One pytest invocation of one side; its JSON and log are kept under ``raw_dir``."""
    stem = raw_dir / f"pair{pair}-{side.name}"
    json_path, log_path = stem.with_suffix(".json"), stem.with_suffix(".log")
    env = pytest_child_env()
    command = pytest_command(side, args, json_path, scratch / f"pytest-{side.name}")
    with log_path.open("w") as log:
        done = subprocess.run(command, cwd=side.worktree, stdout=log, stderr=subprocess.STDOUT,
                              env=env, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not json_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-20:])
        raise RunError(f"pytest on {side.name} ({side.revision[:12]}) exited with "
                       f"{done.returncode}; its log is {log_path}:\n{tail}")
    data = json.loads(json_path.read_text())
    measured = (data.get("commit_info") or {}).get("id")
    if measured and measured != side.revision:
        raise RunError(f"{side.name} measured commit {measured}, not {side.revision}")
    return data


def side_pytest_args(side: Side, request: GateRun, changed: set[str],
                     log: Callable[[str], None]) -> list[str]:
    """The profile's selection for one side: its own formats, references only if changed."""
    requested = request.backends or request.profile.backends
    entries = selection.registered(side.python, side.worktree)
    if entries is None:  # nothing to choose from: the suite's own default
        return request.profile.pytest_args(requested) + sized_args(side.worktree,
                                                                   request.profile)
    backends = selection.backends_for(entries, changed, requested)
    if not backends:
        raise RunError(f"{side.name} ({side.revision[:12]}) registers none of the backends "
                       f"asked for ({', '.join(requested or ())}); check --backends")
    log(f"gate: {side.name} measures {', '.join(backends)}")
    return request.profile.pytest_args(backends) + sized_args(side.worktree, request.profile)


def sized_args(worktree: Path, profile: Profile) -> list[str]:
    """``--storage-size`` for a revision whose suite has an image-size axis, else nothing.

    Older revisions measure 32 px images only and do not know the option; passing it
    to them would end their pytest with a usage error.
    """
    settings = worktree / "benchmarks" / "settings.py"
    if settings.exists() and "--storage-size" in settings.read_text():
        return ["--storage-size", ",".join(map(str, profile.sides))]
    return []


def cached_args(worktree: Path, cache: Path) -> list[str]:
    """Stores built once per side and job, for revisions whose suite can keep them.

    Building the stores to read was most of a pair's time; a revision's code does not
    change during the job, so its stores are built in the first pair and reused.
    """
    settings = worktree / "benchmarks" / "settings.py"
    if settings.exists() and "--storage-store-cache" in settings.read_text():
        return ["--storage-store-cache", str(cache)]
    return []


def cached_args_per_side(trees: dict, scratch: Path) -> dict[str, list[str]]:
    """``cached_args`` for both sides, or for neither: a side reading stores built once
    at the start of the job against one reading stores just built would compare page
    caches as well as code (this machine reclaims pages that stay idle)."""
    args = {name: cached_args(trees[name], scratch / f"stores-{name}") for name in trees}
    return args if all(args.values()) else {name: [] for name in trees}


def install_control(worktree: Path) -> None:
    """The same control code on both sides, whatever each revision holds (or lacks)."""
    if CONTROL_FILE.exists():
        (worktree / "benchmarks").mkdir(exist_ok=True)
        shutil.copyfile(CONTROL_FILE, worktree / "benchmarks" / CONTROL_FILE.name)


def run_gate(request: GateRun, log: Callable[[str], None] = print) -> verdict.Outcome:
    repo = worktrees.repository_root()
    revisions = {"base": worktrees.resolve(repo, request.base_ref),
                 "head": worktrees.resolve(repo, request.head_ref)}
    # Absolute: pytest writes its JSON from inside a worktree.
    out_dir = request.out_dir.resolve()
    raw_dir = out_dir / "raw"
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.mkdir(parents=True)
    log(f"gate: base {request.base_ref} ({revisions['base'][:12]}), head {request.head_ref} "
        f"({revisions['head'][:12]}), profile {request.profile.name}: {request.profile.description}")
    started = time.monotonic()
    results = _measure(request, repo, revisions, raw_dir, log)
    context = (f"base `{request.base_ref}` ({revisions['base'][:12]}) vs head "
               f"`{request.head_ref}` ({revisions['head'][:12]}); profile "
               f"{request.profile.name}; {len(results['base'])} alternating pairs in "
               f"{(time.monotonic() - started) / 60:.1f} min")
    outcome = _judge(request, revisions, results, out_dir)
    (out_dir / "report.txt").write_text(context + "\n\n" + report.text_report(outcome))
    (out_dir / "report.md").write_text(report.markdown_report(outcome, context=context))
    log(f"gate: {context}")
    return outcome


def _measure(request: GateRun, repo: Path, revisions: dict[str, str], raw_dir: Path,
             log: Callable[[str], None]) -> dict[str, list[tuple[int, dict]]]:
    """Both worktrees, their interpreters, and the alternating pairs; nothing left behind."""
    installed_path = repo / interpreters.REQUIREMENTS
    installed = installed_path.read_text() if installed_path.exists() else None
    changed = selection.changed_files(worktrees.git, repo, revisions["base"], revisions["head"])
    with tempfile.TemporaryDirectory(prefix="gate-") as scratch_name:
        scratch = Path(scratch_name)
        with worktrees.checked_out(repo, revisions, scratch) as trees:
            environments: dict = {}
            sides = {}
            for name in SIDES:
                install_control(trees[name])
                sides[name] = Side(name, revisions[name], trees[name], interpreters.python_for(
                    name, trees[name], installed, scratch, request.install, environments))
            caches = cached_args_per_side({name: trees[name] for name in SIDES}, scratch)
            side_args = {name: side_pytest_args(sides[name], request, changed, log)
                         + caches[name] for name in SIDES}
            return alternate(
                lambda name, pair: measure_once(sides[name], side_args[name], raw_dir, pair,
                                                scratch),
                request.pairs, request.max_minutes * 60, log=log,
                settled=(lambda results: verdict.settled(_judge(request, revisions, results)))
                if request.stop_early else None)


def _judge(request: GateRun, revisions: dict[str, str],
           results: dict[str, list[tuple[int, dict]]],
           out_dir: Path | None = None) -> verdict.Outcome:
    """Merge each side's invocations (into base.json and head.json under ``out_dir``,
    when given), then compare them."""
    refs = {"base": request.base_ref, "head": request.head_ref}
    runs = {}
    for name in SIDES:
        merged = pbjson.merge_runs(results[name], {
            "side": name, "ref": refs[name], "revision": revisions[name],
            "profile": request.profile.name, "pairs": len(results[name])})
        source = f"{name}.json"
        if out_dir is not None:
            (out_dir / source).write_text(json.dumps(merged, indent=2))
            source = str(out_dir / source)
        runs[name] = pbjson.parse_run(merged, source)
    return verdict.judge(runs["base"], runs["head"], threshold=request.threshold,
                         confidence=request.confidence)
