"""``python -m benchmarks.gate``: compare two runs, or measure two revisions and compare them.

Exit status: 0 no regression (or inconclusive: the control moved), 1 a regression,
2 bad input or a revision that could not be measured.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from benchmarks.gate import pbjson, report, verdict
from benchmarks.gate.errors import GateError
from benchmarks.gate.profiles import PROFILES


def percentage(text: str) -> float:
    """'10%' or '10' -> 0.10."""
    try:
        value = float(text.strip().removesuffix("%")) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 10%, got {text!r}") from None
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0% to 1000%, got {text!r}")
    return value


def confidence_level(text: str) -> float:
    value = percentage(text)
    if not 0.5 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a confidence from 50% to 99.9%, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)

    compare = commands.add_parser(
        "compare", help="judge HEAD.json against BASE.json",
        description="Compare two pytest-benchmark JSON files that keep every round's time "
                    "(--benchmark-json, or --benchmark-save with --benchmark-save-data).")
    compare.add_argument("base", type=Path, metavar="BASE.json")
    compare.add_argument("head", type=Path, metavar="HEAD.json")
    _judging_options(compare)
    compare.add_argument("--markdown", type=Path, metavar="PATH",
                         help="also write the table as Markdown (for a CI job summary)")
    compare.set_defaults(action=_compare)

    run = commands.add_parser(
        "run", help="measure two revisions alternately, then compare",
        description="Check out BASE and HEAD in temporary worktrees, run the profile's "
                    "benchmarks for each in alternating pairs, and compare.")
    run.add_argument("--base", required=True, metavar="REF", help="the revision to compare with")
    run.add_argument("--head", default="HEAD", metavar="REF", help="the revision to judge "
                     "(default: HEAD; uncommitted changes are not measured)")
    run.add_argument("--profile", choices=sorted(PROFILES), default="gate",
                     help="; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()))
    run.add_argument("--pairs", type=int, metavar="K", help="alternating base/head pairs "
                     "(default: the profile's; at least 3)")
    run.add_argument("--max-minutes", type=float, metavar="M",
                     help="add no pair (past the third) that would end after M minutes")
    run.add_argument("--backends", metavar="NAMES", help="only these backends (comma-separated)")
    run.add_argument("--out", type=Path, default=Path("reports/gate"), metavar="DIR",
                     help="where base.json, head.json, report.txt/.md and raw/ go "
                          "(default: reports/gate)")
    run.add_argument("--all-pairs", dest="stop_early", action="store_false",
                     help="run every pair the budget allows, even once every benchmark is "
                          "surely within the threshold")
    run.add_argument("--no-install", dest="install", action="store_false",
                     help="fail instead of building a venv when a side's requirements differ")
    _judging_options(run)
    run.set_defaults(action=_run)
    return main


def _judging_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--threshold", type=percentage, default=0.10, metavar="PCT",
                         help="fail when head is surely slower than this (default: 10%%)")
    command.add_argument("--confidence", type=confidence_level, default=0.95, metavar="PCT",
                         help="confidence of the interval (default: 95%%)")


def _compare(args) -> int:
    outcome = verdict.judge(pbjson.load_run(args.base), pbjson.load_run(args.head),
                            threshold=args.threshold, confidence=args.confidence)
    print(report.text_report(outcome), end="")
    if args.markdown:
        args.markdown.write_text(report.markdown_report(
            outcome, context=f"`{args.base}` vs `{args.head}`"))
    return outcome.exit_status


def _run(args) -> int:
    from benchmarks.gate.run import MIN_PAIRS, GateRun, run_gate

    profile = PROFILES[args.profile]
    pairs = args.pairs if args.pairs is not None else profile.pairs
    if pairs < MIN_PAIRS:
        raise GateError(f"--pairs must be at least {MIN_PAIRS}, got {pairs}")
    backends = tuple(name.strip() for name in args.backends.split(",") if name.strip()) \
        if args.backends else None
    outcome = run_gate(GateRun(
        args.base, args.head, profile, args.out, args.threshold, args.confidence, pairs,
        args.max_minutes if args.max_minutes is not None else profile.max_minutes,
        backends, args.install, args.stop_early),
        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.text_report(outcome), end="")
    return outcome.exit_status


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so that worktrees are removed on the way out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.action(args)
    except GateError as error:
        print(f"gate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
