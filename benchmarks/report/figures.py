"""The figures of one run: time, throughput, time relative to raw and disk use against N."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from benchmarks.operations import OPERATIONS
from benchmarks.report.canvas import figure, file_part, finish, line, panels, plain_number, save
from benchmarks.report.runs import SMALLEST_SIDE, Result, Run, split_side
from benchmarks.report.styles import style_for
from benchmarks.report.units import byte_unit, time_unit

N_LABEL = "store size N (images)"
N_LOG_LABEL = "store size N (images, log scale)"
# What one timed call does, for the titles; an operation not in the table goes without.
CALL_WHAT = {operation.name: operation.what for operation in OPERATIONS}
RAW = "raw"
# Whose bytes on disk stand for a backend's store of N images: a store of exactly N
# (store_single's store also holds the images that its rounds added).
_DISK_SOURCES = ("store_many", "read_many", "read_single")


def draw_run(run: Run, out_dir: Path) -> list[tuple[str, Path]]:
    """Every figure the run has data for, as (caption, path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for operation in run.operations:
        path = out_dir / f"time_{file_part(operation)}.png"
        save(time_figure(run, operation), path)
        figures.append((f"{operation}: time against N", path))
    for caption, name, draw in (("throughput against N", "throughput.png", throughput_figure),
                                ("time relative to raw", "relative_to_raw.png", relative_figure),
                                ("disk used against N", "disk.png", disk_figure),
                                ("disk and time against image size", "image_size.png",
                                 size_figure)):
        drawn = draw(run)
        if drawn is not None:
            save(drawn, out_dir / name)
            figures.append((caption, out_dir / name))
    return figures


def time_figure(run: Run, operation: str) -> Figure:
    """Median time against N, linear and log-log side by side; the band spans q1 to q3."""
    unit, scale = time_unit(max(r.median for r in _results(run, operation)))
    what = f" ({CALL_WHAT[operation]})" if operation in CALL_WHAT else ""
    fig = figure(11, 4.6)
    linear, loglog = fig.subplots(1, 2)
    for backend in run.backends:
        points = run.series(backend, operation)
        for ax in (linear, loglog):
            line(ax, backend, [p.n for p in points], [p.median / scale for p in points],
                 [p.q1 / scale for p in points], [p.q3 / scale for p in points])
    linear.set(title="linear axes", xlabel=N_LABEL, ylabel=f"median time per call ({unit})")
    linear.set_ylim(bottom=0)
    linear.xaxis.set_major_formatter(FuncFormatter(plain_number))
    loglog.set(title="log-log axes", xscale="log", yscale="log", xlabel=N_LOG_LABEL,
               ylabel=f"median time per call ({unit}, log scale)")
    finish(fig, f"{operation}{what}: time against N", run,
           {r.dataset for r in _results(run, operation) if r.dataset})
    return fig


def throughput_figure(run: Run) -> Figure | None:
    """Images per second against N, one panel per operation."""
    operations = [op for op in run.operations
                  if any(r.images_per_s for r in _results(run, op))]
    if not operations:
        return None
    fig, axes = panels(len(operations))
    for ax, operation in zip(axes, operations):
        for backend in run.backends:
            points = [p for p in run.series(backend, operation) if p.images_per_s]
            # A round's images over its time, so q3 (slower) bounds the band from below.
            line(ax, backend, [p.n for p in points], [p.images_per_s for p in points],
                 [p.images_per_round / p.q3 for p in points],
                 [p.images_per_round / p.q1 if p.q1 > 0 else p.images_per_s for p in points])
        ax.set(title=operation, xscale="log", yscale="log", xlabel=N_LOG_LABEL,
               ylabel="images/s (median round, log scale)")
    finish(fig, "throughput against N", run)
    return fig


def relative_figure(run: Run) -> Figure | None:
    """Each backend's median over raw's at the same operation and N (1 = as fast as raw)."""
    if RAW not in run.backends or len(run.backends) < 2:
        return None
    operations = [op for op in run.operations if run.series(RAW, op)]
    fig, axes = panels(len(operations))
    for ax, operation in zip(axes, operations):
        ax.axhline(1.0, color=style_for(RAW).color, linestyle=":", linewidth=1.6, label=RAW)
        for backend in run.backends:
            ratios = [(p.n, p.median / run.results[(RAW, operation, p.n)].median)
                      for p in run.series(backend, operation)
                      if backend != RAW and (RAW, operation, p.n) in run.results]
            if ratios:
                ax.plot(*zip(*ratios), label=backend, **style_for(backend).line_kwargs())
        ax.set(title=operation, xscale="log", yscale="log", xlabel=N_LOG_LABEL,
               ylabel="median time ÷ raw's (×, log scale)")
    finish(fig, "time relative to raw (1 = as fast as raw)", run)
    return fig


def disk_figure(run: Run) -> Figure | None:
    """Bytes on disk (du, not apparent size) per backend against N, and per raw pixel byte."""
    stores = {backend: _disk_points(run, backend) for backend in run.backends}
    stores = {backend: points for backend, points in stores.items() if points}
    if not stores:
        return None
    unit, scale = byte_unit(max(p.bytes_on_disk for points in stores.values() for p in points))
    fig = figure(11, 4.6)
    size_ax, ratio_ax = fig.subplots(1, 2)
    for backend, points in stores.items():
        ns = [p.n for p in points]
        line(size_ax, backend, ns, [p.bytes_on_disk / scale for p in points])
        with_raw = [p for p in points if p.raw_pixel_bytes]
        line(ratio_ax, backend, [p.n for p in with_raw],
             [p.bytes_on_disk / p.raw_pixel_bytes for p in with_raw])
    raw_bytes = sorted({(p.n, p.raw_pixel_bytes) for points in stores.values()
                        for p in points if p.raw_pixel_bytes})
    if raw_bytes:
        size_ax.plot([n for n, _ in raw_bytes], [size / scale for _, size in raw_bytes],
                     color="black", linestyle="--", linewidth=1.2, label="raw pixel bytes")
    ratio_ax.axhline(1.0, color="black", linestyle="--", linewidth=1.2)
    size_ax.set(title="bytes on disk", xscale="log", yscale="log", xlabel=N_LOG_LABEL,
                ylabel=f"bytes on disk ({unit}, log scale)")
    ratio_ax.set(title="relative to raw pixel bytes (dashed = 1)", xscale="log", yscale="log",
                 xlabel=N_LOG_LABEL, ylabel="bytes on disk ÷ raw pixel bytes (×, log scale)")
    finish(fig, "disk used against N", run)
    return fig


def size_figure(run: Run) -> Figure | None:
    """Disk per raw pixel byte and read_many time per image against the image side.

    Each point is a store of the largest N measured at every side, so that sides are
    compared at one N; drawn when the run holds two sides or more.
    """
    sides = run.sides
    if len(sides) < 2:
        return None
    common = _common_n(run, sides)
    if common is None:
        return None
    fig = figure(11, 4.6)
    disk_ax, time_ax = fig.subplots(1, 2)
    for backend in run.backends:
        disk, times = [], []
        for side in sides:
            stored = _disk_points(run, backend, side)
            point = next((p for p in stored if p.n == common and p.raw_pixel_bytes), None)
            if point:
                disk.append((side, point.bytes_on_disk / point.raw_pixel_bytes))
            read = run.results.get((backend, sized("read_many", side), common))
            if read:
                times.append((side, read.median / common * 1e6))
        if disk:
            line(disk_ax, backend, *map(list, zip(*disk)))
        if times:
            line(time_ax, backend, *map(list, zip(*times)))
    disk_ax.axhline(1.0, color="black", linestyle="--", linewidth=1.2)
    disk_ax.set(title=f"bytes on disk ÷ raw pixel bytes, N={common:,}", xscale="log",
                xlabel="image side (px, log scale)", ylabel="× raw pixel bytes (dashed = 1)")
    time_ax.set(title=f"read_many time per image, N={common:,}", xscale="log", yscale="log",
                xlabel="image side (px, log scale)", ylabel="µs per image (log scale)")
    finish(fig, "disk and time against image size", run)
    for ax in (disk_ax, time_ax):  # after finish(), which puts log-x ticks at the N values
        ax.xaxis.set_major_locator(FixedLocator(sides))
        ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.xaxis.set_minor_locator(NullLocator())
    return fig


def sized(operation: str, side: int) -> str:
    """The report's name of an operation on images of ``side`` px (32 px: the plain name)."""
    return operation if side == SMALLEST_SIDE else f"{operation}_{side}px"


def _common_n(run: Run, sides: list[int]) -> int | None:
    """The largest N at which every side has a store on disk."""
    per_side = [{p.n for backend in run.backends for p in _disk_points(run, backend, side)}
                for side in sides]
    common = set.intersection(*per_side) if per_side else set()
    return max(common) if common else None


def _disk_points(run: Run, backend: str, side: int = SMALLEST_SIDE) -> list[Result]:
    """Per N, the bytes on disk of a store of exactly N images, from the first source with it."""
    sources = [sized(op, side) for op in _DISK_SOURCES]
    if side == SMALLEST_SIDE:
        sources += [op for op in run.operations
                    if op not in _DISK_SOURCES and split_side(op)[1] == SMALLEST_SIDE]
    points = {}
    for operation in reversed(sources):  # earlier sources overwrite later ones
        for p in run.series(backend, operation):
            if p.bytes_on_disk:
                points[p.n] = p
    return [points[n] for n in sorted(points)]


def _results(run: Run, operation: str) -> list[Result]:
    return [r for r in run.results.values() if r.operation == operation]
