"""Record a writer on the journaling mount once, then build and check crash states from it.

One recorded run serves every cut: the writer is the same up to the cut whether
the power goes off there or later, so the state the disk is left in after the
first ``cut`` records is the state a power cut there leaves. (``record`` with
``freeze_after`` cuts for real, for the harness's own check.)
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from storage.core.facts import PowerLoss
from tests.powerloss import journal
from tests.powerloss.mount import REPO, daemon_env, mounted
from tests.powerloss.sequence import Call

# (test, backend) -> [crash states tried, survived, survived through a documented error]
TALLY: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
_WRITER_TIMEOUT = 180
_VERIFIER_TIMEOUT = 600


@dataclass
class Recording:
    records: list
    returncode: int
    stderr: str


def record(workdir: Path, backend: str, durable: bool, seed: int, plan: list[Call],
           freeze_after: int | None = None, encoding: str | None = None) -> Recording:
    """The writer's run of ``plan`` (of encoded images with ``encoding``), journaled."""
    workdir.mkdir(parents=True, exist_ok=True)
    plan_file = workdir / "plan.json"
    plan_file.write_text(json.dumps([call.as_json() for call in plan]))
    with mounted(workdir, freeze_after=freeze_after) as mount:
        done = subprocess.run(
            [sys.executable, "-m", "tests.powerloss.writer", str(mount.point), backend,
             "1" if durable else "0", str(seed), str(plan_file),
             *([encoding] if encoding else [])],
            cwd=REPO, env=daemon_env(), capture_output=True, text=True, timeout=_WRITER_TIMEOUT)
    return Recording(mount.records(), done.returncode, done.stderr)


def required_ids(records, cut: int, plan: list[Call], durable: bool) -> list[int]:
    """Ids of every call the store promised to keep: those before the last returned sync.

    With ``durable`` a store fsyncs at the end of each write_many and at close, so
    a returned write_many makes it and every call before it durable.
    """
    if not durable:
        return []
    last = -1
    for text in journal.marks_before(records, cut):
        if text == "closed":
            last = len(plan) - 1
        elif text.startswith("returned ") and plan[int(text.split()[1])].kind == "many":
            last = int(text.split()[1])
    return [key for call in plan[:last + 1] for key in call.ids]


def returned_calls(records, cut: int) -> int:
    return sum(text.startswith("returned ") for text in journal.marks_before(records, cut))


def choose_cuts(records, count: int, seed: int) -> list[tuple[int, str]]:
    """``count`` (cut, mode) pairs: sync boundaries first, then random points between.

    Modes take turns, so that every mode meets boundaries and random points alike.
    """
    chooser = random.Random(seed)
    boundaries = journal.sync_boundaries(records)
    chooser.shuffle(boundaries)
    half = min(len(boundaries), (count + 1) // 2)
    cuts = boundaries[:half] + [chooser.randint(1, len(records)) for _ in range(count - half)]
    return [(cut, journal.MODES[i % len(journal.MODES)]) for i, cut in enumerate(cuts)]


@dataclass
class StateReport:
    number: int
    cut: int
    mode: str
    created: bool  # open_store(mode="w") had returned
    required: list[int]
    acknowledged: int  # images of the calls that had returned
    returned: int
    dropped: int
    result: dict

    def describe(self) -> str:
        return (f"crash state {self.number}: cut after journal record {self.cut} ({self.mode}), "
                f"{self.returned} calls returned, {len(self.required)} ids promised, "
                f"{self.dropped} unsynced changes lost: {json.dumps(self.result)[:700]}")

    def problems(self, facts: PowerLoss, durable: bool) -> list[str]:
        """What breaks the promise: (a) an open error not declared, (b) a promised image
        lost or changed, (c) wrong pixels for any id reported present."""
        if set(self.result) != {"r", "a"}:
            return [f"the checking process failed: {self.result}"]
        found = []
        for how, outcome in self.result.items():
            opened = outcome["open"]
            if not durable:
                allowed = facts.errors_not_durable
            else:
                allowed = () if self.created else facts.errors_before_created
            if opened != "ok" and opened not in {error.__name__ for error in allowed}:
                found.append(f"mode {how!r}: open gave {opened} ({outcome.get('errors')})")
            lost = set(outcome.get("missing", [])) | (set(outcome.get("unreadable", []))
                                                     & set(self.required))
            if lost:
                found.append(
                    f"mode {how!r}: {len(lost)} promised ids lost, e.g. {sorted(lost)[:5]}")
            if outcome.get("wrong"):
                found.append(f"mode {how!r}: wrong pixels or labels for ids {outcome['wrong'][:5]}")
            untyped = [error for error in outcome.get("errors", []) if "untyped:" in error]
            if untyped:
                found.append(f"mode {how!r}: untyped errors {untyped[:2]}")
        return found

    def documented(self) -> bool:
        """Survived through an outcome the format declares (a typed error at open)."""
        return any(outcome.get("open") != "ok" for outcome in self.result.values())


def check_cuts(workdir: Path, recording: Recording, backend: str, durable: bool, seed: int,
               plan: list[Call], cuts: list[tuple[int, str]], workers: int = 2,
               keep: bool = False) -> list[StateReport]:
    """Build each crash state under ``workdir/states`` and check it in a new process."""
    states_dir = workdir / "states"
    shutil.rmtree(states_dir, ignore_errors=True)
    reports, job_states = [], []
    for number, (cut, mode) in enumerate(cuts):
        state = journal.crash_state(recording.records, cut, mode, seed=seed * 1000 + number)
        target = states_dir / f"{number:04d}"
        journal.materialize(recording.records, state, target)
        required = required_ids(recording.records, cut, plan, durable)
        job_states.append({"dir": str(target / "store"), "required": required})
        created = "opened" in journal.marks_before(recording.records, cut)
        returned = returned_calls(recording.records, cut)
        reports.append(StateReport(number, cut, mode, created, required,
                                   sum(len(call.ids) for call in plan[:returned]), returned,
                                   state.dropped, {}))
    job = {"backend": backend, "seed": seed, "workers": workers,
           "plan": [call.as_json() for call in plan], "states": job_states}
    job_file, results_file = workdir / "job.json", workdir / "results.json"
    job_file.write_text(json.dumps(job))
    subprocess.run([sys.executable, "-m", "tests.powerloss.verifier", str(job_file),
                    str(results_file)], cwd=REPO, env=daemon_env(), check=True,
                   timeout=_VERIFIER_TIMEOUT)
    for report, result in zip(reports, json.loads(results_file.read_text())):
        report.result = result
    if not keep:
        shutil.rmtree(states_dir, ignore_errors=True)
    return reports
