"""One report from saved runs: figures per run, ratios between runs, report.md."""
from __future__ import annotations

from pathlib import Path

import matplotlib

from benchmarks.report.canvas import save
from benchmarks.report.compare import ratio_figure, ratios
from benchmarks.report.figures import draw_run
from benchmarks.report.markdown import report_markdown
from benchmarks.report.runs import ReportInputError, Run, load_runs


def build_report(paths: list[str | Path], out_dir: str | Path, *, merge: bool = False,
                 command: str = "python -m benchmarks.report") -> Path:
    """Write the figures and report.md into ``out_dir``; return report.md's path.

    Raises ReportInputError, before writing anything, for an input it cannot use.
    """
    runs = load_runs(paths, merge=merge)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportInputError(f"--out {out_dir}: exists and is not a folder; name a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Names come from the files: a '$' in one must print as itself, not start TeX math.
    with matplotlib.rc_context({"text.parse_math": False}):
        # One run's figures go straight into out_dir; several runs get a folder each.
        figures = {run.label: draw_run(run, out_dir / run.label if len(runs) > 1 else out_dir)
                   for run in runs}
        comparisons = [_compare(runs[0], new, out_dir) for new in runs[1:]]
    report = out_dir / "report.md"
    report.write_text(report_markdown(runs, figures, comparisons, out_dir, command),
                      encoding="utf-8")
    return report


def _compare(base: Run, new: Run, out_dir: Path):
    """Each later run against the first, the baseline."""
    pairs = ratios(base, new)
    path = out_dir / f"ratio_{new.label}_vs_{base.label}.png" if pairs else None
    if path:
        save(ratio_figure(base, new, pairs), path)
    return base, new, pairs, path
