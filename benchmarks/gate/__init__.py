"""A performance regression gate: base and head measured side by side, judged by intervals.

``python -m benchmarks.gate compare BASE.json HEAD.json`` judges two pytest-benchmark
runs that kept their per-round times; ``python -m benchmarks.gate run --base REF``
checks out both revisions, measures them alternately in one job, then compares.
"""
