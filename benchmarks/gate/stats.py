"""The head/base ratio of median round times, with a bootstrap confidence interval.

Rounds from one pytest invocation share that moment's machine speed, so they
are not independent: resampling single rounds gives intervals far too narrow
on a runner whose speed drifts between invocations. When base and head ran in
alternating pairs, the ratio is taken within each pair (where drift divides
out) and the pairs are resampled; otherwise the invocations (blocks) of each
side are resampled, then the rounds within them. Only numpy and the standard
library; a fixed seed makes every verdict reproducible.
"""
from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from benchmarks.gate.pbjson import Block

RESAMPLES = 2000
SEED = 20_240_611
_VALUES_PER_CHUNK = 2_000_000  # bounds the memory of one vectorised resampling step


@dataclass(frozen=True)
class RatioInterval:
    ratio: float  # head/base ratio of medians: above 1 means head is slower
    low: float
    high: float
    method: str  # "paired", "blocks" or "rounds": what was resampled


def seed_for(name: str) -> int:
    """A per-benchmark seed, so a verdict does not depend on which other benchmarks ran."""
    return SEED ^ zlib.crc32(name.encode())


def ratio_interval(base: Sequence[Block], head: Sequence[Block], *, confidence: float = 0.95,
                   resamples: int = RESAMPLES, seed: int = SEED) -> RatioInterval:
    """The head/base ratio of medians and its bootstrap interval at ``confidence``."""
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    paired = _paired(base, head)
    if paired:
        log_ratios = np.log([np.median(head_times) / np.median(base_times)
                             for base_times, head_times in zip(*paired)])
        ratio = float(np.exp(log_ratios.mean()))
        choice = rng.integers(0, len(log_ratios), (resamples, len(log_ratios)))
        low, high = np.exp(np.quantile(log_ratios[choice].mean(axis=1), [tail, 1 - tail]))
        # Widen in log space about the estimate, so the interval stays on the ratio's scale.
        widen = small_sample_factor(len(log_ratios), confidence)
        low, high = ratio * (low / ratio) ** widen, ratio * (high / ratio) ** widen
        return RatioInterval(ratio, float(low), float(high), "paired")
    base_blocks = [block.times for block in base]
    head_blocks = [block.times for block in head]
    ratio = float(np.median(np.concatenate(head_blocks)) / np.median(np.concatenate(base_blocks)))
    ratios = _resampled_medians(head_blocks, resamples, rng) / _resampled_medians(
        base_blocks, resamples, rng)
    low, high = np.quantile(ratios, [tail, 1 - tail])
    method = "blocks" if max(len(base_blocks), len(head_blocks)) > 1 else "rounds"
    return RatioInterval(ratio, float(low), float(high), method)


def _paired(base: Sequence[Block], head: Sequence[Block]):
    """Base and head rounds of the pairs both sides ran (at least 3), else None.

    The geometric mean of per-pair ratios is the ratio of medians measured where
    both sides saw the same machine; pairs, not rounds, are resampled, since the
    spread of the per-pair ratios already holds the rounds' noise.
    """
    base_pairs = {block.pair: block.times for block in base}
    head_pairs = {block.pair: block.times for block in head}
    if None in base_pairs or None in head_pairs or len(base_pairs) < len(base) \
            or len(head_pairs) < len(head):
        return None
    common = sorted(set(base_pairs) & set(head_pairs))
    if len(common) < 3:
        return None
    return [base_pairs[pair] for pair in common], [head_pairs[pair] for pair in common]


@functools.lru_cache(maxsize=None)
def small_sample_factor(pairs: int, confidence: float) -> float:
    """How much wider Student's t interval of a mean is than the percentile bootstrap's.

    Resampling k pairs gives a spread sqrt((k-1)/k) too small, with normal rather
    than t tails; with the 3 to 10 pairs a CI job can afford, that difference is
    what separates a false alarm from none.
    """
    upper = (1 + confidence) / 2
    return (student_t_quantile(upper, pairs - 1) / NormalDist().inv_cdf(upper)
            * math.sqrt(pairs / (pairs - 1)))


def student_t_quantile(probability: float, df: int) -> float:
    """Quantile of Student's t for ``probability`` > 0.5: bisection on the integrated pdf."""
    log_scale = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 20_001)
        return 0.5 + float(np.trapezoid(
            np.exp(log_scale - (df + 1) / 2 * np.log1p(grid ** 2 / df)), grid))

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        high *= 2
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def _resampled_medians(blocks: list[np.ndarray], resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Median of each resample: blocks drawn with replacement, then rounds within each.

    Each drawn block contributes as many draws as the largest block has rounds, so
    every invocation weighs the same whatever its round count.
    """
    sizes = np.array([len(block) for block in blocks])
    width = int(sizes.max())
    padded = np.zeros((len(blocks), width))
    for row, block in enumerate(blocks):
        padded[row, :len(block)] = block
    choice = rng.integers(0, len(blocks), (resamples, len(blocks)))
    medians = np.empty(resamples)
    step = max(1, _VALUES_PER_CHUNK // (len(blocks) * width))
    for start in range(0, resamples, step):
        picked = choice[start:start + step]
        draws = (rng.random((*picked.shape, width)) * sizes[picked][..., None]).astype(np.intp)
        values = padded[picked[..., None], draws]
        medians[start:start + step] = np.median(values.reshape(len(picked), -1), axis=1)
    return medians
