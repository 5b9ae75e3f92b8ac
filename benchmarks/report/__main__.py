"""python -m benchmarks.report RUN.json [MORE.json ...] --out DIR"""
from __future__ import annotations

import argparse
import shlex
import sys

from benchmarks.report.build import build_report
from benchmarks.report.runs import ReportInputError

BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        report = build_report(args.runs, args.out, merge=args.merge,
                              command="python -m benchmarks.report " + shlex.join(argv))
    except ReportInputError as error:
        print(f"benchmarks.report: {error}", file=sys.stderr)
        return BAD_INPUT
    except OSError as error:  # e.g. an --out folder we may not write to
        print(f"benchmarks.report: cannot write the report into {args.out}: {error}",
              file=sys.stderr)
        return BAD_INPUT
    print(f"wrote {report} and its figures in {report.parent}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Figures and a markdown report from saved pytest-benchmark runs of the "
                    "storage suite (pytest benchmarks --benchmark-only --benchmark-json=RUN.json). "
                    "With several runs, each later run is compared with the first.")
    parser.add_argument("runs", nargs="+", metavar="RUN.json", help="pytest-benchmark JSON files")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for report.md and the figures (made if missing)")
    parser.add_argument("--merge", action="store_true",
                        help="treat the files as parts of one run (a later file wins a "
                             "duplicate) instead of comparing them")
    return parser


if __name__ == "__main__":
    sys.exit(main())
