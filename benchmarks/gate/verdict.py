"""Verdicts: each benchmark's ratio interval against the threshold, and the control rule.

A benchmark fails only when the whole interval lies above 1 + threshold: the
gate must be sure the slowdown is larger than the threshold, not merely that
the median moved. When the control (a benchmark that uses none of the code
under test) moved by more than the threshold, the machine changed speed under
the measurement, and regressions are reported as inconclusive instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from benchmarks.gate.pbjson import Benchmark
from benchmarks.gate.stats import RESAMPLES, RatioInterval, ratio_interval, seed_for

FASTER, SAME, SLOWER, REGRESSION = "faster", "same", "slower", "REGRESSION"
NEW, REMOVED, TOO_FEW = "new", "removed", "too few rounds"
INCONCLUSIVE = "inconclusive (machine noise)"
CONTROL_STEADY, CONTROL_MOVED = "control: steady", "control: MOVED"
MIN_ROUNDS = 3  # fewer rounds on a side give an interval of no width, hence no verdict


@dataclass(frozen=True)
class Row:
    fullname: str
    base_median: float | None
    head_median: float | None
    interval: RatioInterval | None
    verdict: str
    control: bool = False


@dataclass(frozen=True)
class Outcome:
    rows: list[Row]
    threshold: float
    confidence: float
    notes: list[str] = field(default_factory=list)

    def with_verdict(self, verdict: str) -> list[Row]:
        return [row for row in self.rows if row.verdict == verdict]

    @property
    def exit_status(self) -> int:
        return 1 if self.with_verdict(REGRESSION) else 0

    @property
    def summary(self) -> str:
        limit = f"+{self.threshold:.0%}"
        regressions, inconclusive = self.with_verdict(REGRESSION), self.with_verdict(INCONCLUSIVE)
        if regressions:
            return (f"FAIL: {len(regressions)} regression(s) beyond {limit} "
                    f"({self.confidence:.0%} interval above {1 + self.threshold:.2f}): "
                    + ", ".join(_short(row.fullname) for row in regressions))
        if inconclusive:
            return (f"INCONCLUSIVE (machine noise): {len(inconclusive)} benchmark(s) look slower "
                    f"beyond {limit}, but the control moved too, so they are not failed; "
                    "re-run the gate")
        return f"PASS: no regression beyond {limit}"


def settled(outcome: Outcome) -> bool:
    """Every benchmark surely within the threshold (its whole interval below 1 + threshold)
    and the control steady: more pairs could not turn this into a failure worth finding.

    Only a pass settles early; a regression always gets every pair the budget allows,
    so stopping early never adds false alarms.
    """
    for row in outcome.rows:
        if row.verdict in (NEW, REMOVED):
            continue
        if row.control:
            if row.verdict != CONTROL_STEADY:
                return False
        elif row.interval is None or row.interval.high >= 1 + outcome.threshold:
            return False
    return True


def judge(base: dict[str, Benchmark], head: dict[str, Benchmark], *, threshold: float,
          confidence: float = 0.95, resamples: int = RESAMPLES) -> Outcome:
    """Compare two runs benchmark by benchmark (paired by full name)."""
    names = list(base) + [name for name in head if name not in base]
    rows = [_row(base.get(name), head.get(name), threshold, confidence, resamples)
            for name in names]
    moved = [row for row in rows if row.verdict == CONTROL_MOVED]
    notes = []
    if moved:
        rows = [replace(row, verdict=INCONCLUSIVE) if row.verdict == REGRESSION else row
                for row in rows]
        notes += [f"the control {_short(row.fullname)} moved by {row.interval.ratio - 1:+.1%} "
                  f"between base and head (threshold {threshold:.0%}): the machine's speed "
                  "changed under the measurement" for row in moved]
    elif not any(row.control and row.interval for row in rows):
        notes.append("no control benchmark on both sides: machine noise cannot be told "
                     "apart from a regression")
    return Outcome(rows, threshold, confidence, notes)


def _row(base: Benchmark | None, head: Benchmark | None, threshold: float, confidence: float,
         resamples: int) -> Row:
    either = base or head
    base_median = float(np.median(base.times)) if base else None
    head_median = float(np.median(head.times)) if head else None
    control = either.is_control
    if base is None or head is None:
        return Row(either.fullname, base_median, head_median, None,
                   NEW if base is None else REMOVED, control)
    if min(len(base.times), len(head.times)) < MIN_ROUNDS:
        return Row(base.fullname, base_median, head_median, None, TOO_FEW, control)
    interval = ratio_interval(base.blocks, head.blocks, confidence=confidence,
                              resamples=resamples, seed=seed_for(base.fullname))
    if control:
        moved = not 1 / (1 + threshold) <= interval.ratio <= 1 + threshold
        verdict = CONTROL_MOVED if moved else CONTROL_STEADY
    elif interval.low > 1 + threshold:
        verdict = REGRESSION
    elif interval.low > 1:
        verdict = SLOWER
    elif interval.high < 1:
        verdict = FASTER
    else:
        verdict = SAME
    return Row(base.fullname, base_median, head_median, interval, verdict, control)


def _short(fullname: str) -> str:
    return fullname.rsplit("::", 1)[-1]
