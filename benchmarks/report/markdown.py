"""report.md: where each run came from, its figures, and tables of every (operation, N)."""
from __future__ import annotations

import os
from pathlib import Path

from benchmarks.report.compare import Ratio
from benchmarks.report.runs import KNOWN_OPERATIONS, Result, Run
from benchmarks.report.units import format_bytes, format_rate, format_time

# The rows of a table: a label and how to read it off a Result.
_ROWS = (
    ("median", lambda r: format_time(r.median)),
    ("IQR", lambda r: format_time(r.iqr)),
    ("images/s", lambda r: format_rate(r.images_per_s)),
    ("MB/s", lambda r: format_rate(r.mb_per_s)),
    ("bytes on disk", lambda r: format_bytes(r.bytes_on_disk)),
    ("disk ÷ raw pixels", lambda r: format_rate(r.bytes_on_disk / r.raw_pixel_bytes)
     if r.bytes_on_disk and r.raw_pixel_bytes else "—"),
    ("rounds", lambda r: str(r.rounds)),
)


def report_markdown(runs: list[Run], figures: dict[str, list[tuple[str, Path]]],
                    comparisons: list[tuple[Run, Run, list[Ratio], Path | None]], out_dir: Path,
                    command: str) -> str:
    lines = ["# Benchmark report", "",
             f"Made with `{command}`. Times are per timed round (one call of the operation); "
             "IQR is the interquartile range between rounds; bytes on disk are allocated "
             "blocks (as `du` counts), not apparent sizes.", ""]
    for base, new, pairs, figure in comparisons:
        lines += _comparison(base, new, pairs, _link(figure, out_dir) if figure else "")
    for run in runs:
        lines += _run_section(run, figures.get(run.label, []), out_dir, several=len(runs) > 1)
    return "\n".join(lines).rstrip() + "\n"


def _run_section(run: Run, figures, out_dir: Path, several: bool) -> list[str]:
    lines = [f"## Run `{run.label}`" if several else "## Run", "", *_provenance(run), ""]
    lines += _gaps(run)
    lines += ["### Figures", ""]
    lines += [f"![{caption}]({_link(path, out_dir)})" + "\n" for caption, path in figures]
    lines += ["### Tables", ""]
    for operation in run.operations:
        for n in run.sizes:
            lines += _table(run, operation, n)
    return lines


def _provenance(run: Run) -> list[str]:
    shapes = sorted({"×".join(map(str, r.image_shape)) for r in run.results.values()
                     if r.image_shape})
    commit = run.commit
    commit_text = (f"{str(commit.get('id', ''))[:10]} on {commit.get('branch', '?')}"
                   f"{' (uncommitted changes)' if commit.get('dirty') else ''}"
                   if commit.get("id") else "unknown")
    rows = [("file", f"`{run.source}`"),
            ("date", run.datetime or "unknown"),
            ("commit", commit_text),
            ("data set", ", ".join(run.datasets) or "unknown"),
            ("image shape", ", ".join(shapes) or "unknown"),
            ("machine", machine_summary(run.machine)),
            ("backends", ", ".join(run.backends)),
            ("N", ", ".join(f"{n:,}" for n in run.sizes))]
    return ["| | |", "|:--|:--|", *(f"| {name} | {value} |" for name, value in rows)]


def machine_summary(machine: dict) -> str:
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    parts = [cpu.get("brand_raw") or machine.get("processor") or None,
             f"{cpu['count']} CPUs" if cpu.get("count") else None,
             machine.get("machine"),
             " ".join(str(part) for part in (machine.get("system"), machine.get("release"))
                      if part) or None,
             " ".join(str(part) for part in (machine.get("python_implementation"),
                                             machine.get("python_version")) if part) or None,
             f"host {machine['node']}" if machine.get("node") else None]
    return ", ".join(str(part) for part in parts if part) or "unknown"


def _gaps(run: Run) -> list[str]:
    """What the run lacks or left out, so an absent line in a figure is not a mystery."""
    lines = []
    absent = [op for op in KNOWN_OPERATIONS if op not in run.operations]
    if absent:
        lines.append(f"- Operations not in this run: {', '.join(absent)}.")
    missing = run.missing()
    if missing:
        shown = "; ".join(f"{op} {backend} N={n:,}" for backend, op, n in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        lines.append(f"- Not measured: {shown}{more}.")
    for problem in run.skipped:
        lines.append(f"- Left out: {problem}.")
    return ["Gaps:", "", *lines, ""] if lines else []


def _table(run: Run, operation: str, n: int) -> list[str]:
    """One operation at one N, a column per backend that ran the operation."""
    backends = [b for b in run.backends if run.series(b, operation)]
    results: list[Result | None] = [run.results.get((b, operation, n)) for b in backends]
    if not any(results):
        return []
    lines = [f"#### {operation}, N={n:,}", "",
             "| | " + " | ".join(_cell(b) for b in backends) + " |",
             "|:--|" + "--:|" * len(backends)]
    for name, read in _ROWS:
        lines.append(f"| {name} | " + " | ".join(read(r) if r else "—" for r in results) + " |")
    return lines + [""]


def _comparison(base: Run, new: Run, pairs: list[Ratio], figure: str) -> list[str]:
    lines = [f"## `{new.label}` against `{base.label}`", "",
             f"Ratio of medians, {new.label} ÷ {base.label}, for each (operation, backend, N) "
             "that both runs hold, largest first: above 1, the later run is slower.", ""]
    if set(base.datasets) != set(new.datasets):
        lines += [f"Note: the runs used different data sets ({', '.join(base.datasets)} "
                  f"against {', '.join(new.datasets)}).", ""]
    if not pairs:
        return lines + ["The runs have no (operation, backend, N) in common.", ""]
    lines += [f"![{new.label} against {base.label}]({figure})", "",
              f"| ratio | operation | backend | N | median in {base.label} | "
              f"median in {new.label} |", "|--:|:--|:--|--:|--:|--:|"]
    lines += [f"| ×{r.value:.2f} | {r.new.operation} | {r.new.backend} | {r.new.n:,} | "
              f"{format_time(r.base.median)} | {format_time(r.new.median)} |" for r in pairs]
    return lines + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a '|' in a name would end the table cell


def _link(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()
