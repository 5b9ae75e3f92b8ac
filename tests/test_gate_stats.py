"""The gate's statistics on synthetic round times: no false alarms, real regressions caught."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.gate.pbjson import Benchmark, Block
from benchmarks.gate.stats import ratio_interval, small_sample_factor, student_t_quantile
from benchmarks.gate.verdict import (CONTROL_MOVED, CONTROL_STEADY, FASTER, INCONCLUSIVE, NEW,
                                     REGRESSION, REMOVED, SAME, SLOWER, TOO_FEW, judge)

THRESHOLD = 0.10


def alternating_runs(rng, *, shift=1.0, noise=0.2, pairs=6, rounds=10, drift=0.3, jitter=0.0,
                     outliers=0):
    """Base and head blocks as the gate measures them: one block per side per pair.

    ``drift``: the runner's speed, drawn per pair within +-drift and shared by both
    sides of the pair; ``jitter``: each invocation's own speed (log-normal sigma);
    ``noise``: each round's (log-normal sigma); ``outliers``: head rounds made 20x slow.
    """
    base, head = [], []
    for pair in range(pairs):
        speed = rng.uniform(1 - drift, 1 + drift)
        for blocks, factor in ((base, 1.0), (head, shift)):
            times = 1e-3 * factor * speed * rng.lognormal(0, jitter) \
                * rng.lognormal(0, noise, rounds)
            blocks.append(Block(times, pair))
    for position in rng.choice(pairs * rounds, outliers, replace=False):
        head[position // rounds].times[position % rounds] *= 20
    return base, head


def one_file_each(base, head):
    """The same rounds as two plain result files: no pairing, one block per side."""
    return ([Block(np.concatenate([block.times for block in base]))],
            [Block(np.concatenate([block.times for block in head]))])


def benchmark(name, blocks, operation="read_many"):
    return Benchmark(name, "group", {"operation": operation}, tuple(blocks))


def verdict_of(base_blocks, head_blocks, threshold=THRESHOLD):
    outcome = judge({"b": benchmark("b", base_blocks)}, {"b": benchmark("b", head_blocks)},
                    threshold=threshold)
    return outcome.rows[0].verdict


def test_identical_distributions_with_20_percent_noise_never_fail():
    for seed in range(100):
        base, head = alternating_runs(np.random.default_rng(seed), noise=0.2, jitter=0.05)
        assert verdict_of(base, head) != REGRESSION, f"paired, seed {seed}"
        assert verdict_of(*one_file_each(base, head)) != REGRESSION, f"one file, seed {seed}"


def test_identical_distributions_in_only_three_pairs_never_fail():
    # What the gate keeps when its time budget cuts it short: the t widening holds here.
    for seed in range(100):
        base, head = alternating_runs(np.random.default_rng(seed), noise=0.2, pairs=3,
                                      jitter=0.05)
        assert verdict_of(base, head) != REGRESSION, f"seed {seed}"


def test_a_15_percent_shift_with_5_percent_noise_fails():
    caught = [verdict_of(*alternating_runs(np.random.default_rng(seed), shift=1.15, noise=0.05,
                                           pairs=8)) == REGRESSION
              for seed in range(50)]
    assert np.mean(caught) >= 0.9, f"caught in {sum(caught)} of 50 seeds"
    for seed in range(20):  # the same shift in two plain files of 60 rounds each
        base, head = alternating_runs(np.random.default_rng(seed), shift=1.15, noise=0.05,
                                      drift=0.0)
        assert verdict_of(*one_file_each(base, head)) == REGRESSION, f"seed {seed}"


def test_pairing_cancels_drift_between_pairs():
    # The runner's speed swings +-40 % between pairs; within a pair both sides see it.
    widths = []
    for seed in range(20):
        base, head = alternating_runs(np.random.default_rng(seed), shift=1.2, noise=0.03,
                                      drift=0.4)
        paired, pooled = ratio_interval(base, head), ratio_interval(*one_file_each(base, head))
        assert paired.method == "paired" and pooled.method == "rounds"
        assert paired.low > 1 + THRESHOLD, f"seed {seed}"
        widths.append((pooled.high - pooled.low) / (paired.high - paired.low))
    assert np.median(widths) > 1.5


def test_a_few_wild_outlier_rounds_do_not_fail():
    for seed in range(30):
        base, head = alternating_runs(np.random.default_rng(seed), noise=0.1, outliers=4)
        assert max(block.times.max() for block in head) > 5 * max(
            block.times.max() for block in base)
        assert verdict_of(base, head) != REGRESSION, f"paired, seed {seed}"
        assert verdict_of(*one_file_each(base, head)) != REGRESSION, f"one file, seed {seed}"


def test_the_interval_covers_the_true_ratio():
    covered = 0
    for seed in range(100):
        base, head = alternating_runs(np.random.default_rng(seed), shift=1.3, noise=0.1,
                                      jitter=0.05)
        interval = ratio_interval(base, head)
        covered += interval.low <= 1.3 <= interval.high
    assert covered >= 90


def test_verdicts_faster_same_slower():
    rng = np.random.default_rng(3)
    assert verdict_of(*alternating_runs(rng, shift=0.8, noise=0.02)) == FASTER
    assert verdict_of(*alternating_runs(rng, shift=1.0, noise=0.02)) == SAME
    assert verdict_of(*alternating_runs(rng, shift=1.05, noise=0.01, pairs=10)) == SLOWER
    assert verdict_of(*alternating_runs(rng, shift=1.5, noise=0.02)) == REGRESSION


def test_verdicts_are_reproducible():
    base, head = alternating_runs(np.random.default_rng(11), shift=1.12, noise=0.1)
    assert ratio_interval(base, head, seed=5) == ratio_interval(base, head, seed=5)


def test_new_and_removed_benchmarks_are_reported_not_failed():
    base, head = alternating_runs(np.random.default_rng(0), noise=0.05)
    outcome = judge({"kept": benchmark("kept", base), "gone": benchmark("gone", base)},
                    {"kept": benchmark("kept", head), "added": benchmark("added", head)},
                    threshold=THRESHOLD)
    assert {row.fullname: row.verdict for row in outcome.rows} == {
        "kept": SAME, "gone": REMOVED, "added": NEW}
    assert outcome.exit_status == 0


def test_a_run_from_before_the_image_size_axis_pairs_with_its_32px_benchmarks():
    base, head = alternating_runs(np.random.default_rng(0), noise=0.05)
    old, new = "test_read_many[lmdb-N=1000]", "test_read_many[lmdb-32px-N=1000]"
    large = "test_read_many[lmdb-256px-N=1000]"
    outcome = judge({old: benchmark(old, base)},
                    {new: benchmark(new, head), large: benchmark(large, head)},
                    threshold=THRESHOLD)
    assert {row.fullname: row.verdict for row in outcome.rows} == {new: SAME, large: NEW}


def test_too_few_rounds_get_no_verdict():
    one_round = [Block(np.array([1.0, 2.0]))]
    assert verdict_of(one_round, [Block(np.array([5.0, 6.0]))]) == TOO_FEW


def _control_case(control_shift):
    rng = np.random.default_rng(1)
    slow_base, slow_head = alternating_runs(rng, shift=1.4, noise=0.03)
    control_base, control_head = alternating_runs(rng, shift=control_shift, noise=0.03)
    return judge({"slow": benchmark("slow", slow_base),
                  "control": benchmark("control", control_base, "control")},
                 {"slow": benchmark("slow", slow_head),
                  "control": benchmark("control", control_head, "control")},
                 threshold=THRESHOLD)


def test_a_steady_control_lets_a_regression_fail():
    outcome = _control_case(1.0)
    verdicts = {row.fullname: row.verdict for row in outcome.rows}
    assert verdicts == {"slow": REGRESSION, "control": CONTROL_STEADY}
    assert outcome.exit_status == 1 and outcome.summary.startswith("FAIL")


@pytest.mark.parametrize("control_shift", [1.25, 0.8])
def test_a_moved_control_makes_a_regression_inconclusive(control_shift):
    outcome = _control_case(control_shift)
    verdicts = {row.fullname: row.verdict for row in outcome.rows}
    assert verdicts == {"slow": INCONCLUSIVE, "control": CONTROL_MOVED}
    assert outcome.exit_status == 0
    assert outcome.summary.startswith("INCONCLUSIVE (machine noise)")
    assert any("control" in note and "moved" in note for note in outcome.notes)


def test_students_t_quantiles():
    for df, expected in ((1, 12.706), (5, 2.571), (9, 2.262), (30, 2.042)):
        assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=2e-3)
    assert small_sample_factor(100, 0.95) == pytest.approx(1.0, abs=0.03)
    assert small_sample_factor(3, 0.95) > 2.5
