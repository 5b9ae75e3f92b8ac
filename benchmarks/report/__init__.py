"""Figures and a markdown report from saved pytest-benchmark runs of the suite.

    python -m benchmarks.report RUN.json [MORE.json ...] --out DIR
"""
