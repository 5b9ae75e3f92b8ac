"""Drawing shared by the figures: sizes, lines with bands, readable ticks, one legend, PNGs.

Figures are built on matplotlib's ``Figure`` directly, never through pyplot, and rendered
by the Agg canvas: no interactive backend, no global figure state.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (FixedLocator, FuncFormatter, LogLocator, NullFormatter,
                               NullLocator)
from PIL import Image

from benchmarks.report.runs import Run
from benchmarks.report.styles import style_for

DPI = 100
BAND_ALPHA = 0.18


def line(ax, backend: str, ns, values, low=None, high=None) -> None:
    """A backend's line in its style, with a band (or a bar, at one N) from low to high."""
    if not ns:
        return
    style = style_for(backend)
    ax.plot(ns, values, label=backend, **style.line_kwargs())
    if low is None:
        return
    if len(ns) > 1:
        ax.fill_between(ns, low, high, color=style.color, alpha=BAND_ALPHA, linewidth=0)
    else:  # a band needs two points; one N gets a bar from q1 to q3
        ax.errorbar(ns, values, yerr=[[values[0] - low[0]], [high[0] - values[0]]], fmt="none",
                    ecolor=style.color, capsize=4, linewidth=1.2)


def figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def panels(count: int):
    """A grid of two panels a row, the unused ones hidden."""
    rows = math.ceil(count / 2)
    fig = figure(11, 1.2 + 3.6 * rows)
    axes = list(fig.subplots(rows, 2, squeeze=False).flat)
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def finish(fig: Figure, what: str, run: Run, datasets=None) -> None:
    """Title with what and the data set; one legend below the panels, clear of the lines."""
    datasets = run.datasets if datasets is None else sorted(datasets)
    fig.suptitle(f"{what} · data: {', '.join(datasets) or 'not recorded'}", fontsize=13)
    entries = {}
    for ax in fig.axes:
        ax.grid(True, which="major", color="#dddddd", linewidth=0.7)
        readable_log_ticks(ax)
        if ax.get_xscale() == "log" and len(run.sizes) <= 8:
            ax.xaxis.set_major_locator(FixedLocator(run.sizes))  # ticks at the measured N
            ax.xaxis.set_minor_locator(NullLocator())
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    order = ([b for b in run.backends if b in entries]
             + [label for label in entries if label not in run.backends])
    if order:
        fig.legend([entries[label] for label in order], order, loc="outside lower center",
                   ncol=min(len(order), 8), frameon=False)


def readable_log_ticks(ax) -> None:
    """Plain numbers (0.5, 20, 1,000) on log axes instead of powers of ten, in finer steps
    when an axis spans few decades, so it still carries several labels."""
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        low, high = sorted(limits)
        if axis.get_scale() != "log" or low <= 0:
            continue
        decades = math.log10(high / low)
        subs = ((1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if decades < 0.6 else
                (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1.2 else
                (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,))
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(plain_number))
        axis.set_minor_formatter(NullFormatter())
        if len(subs) > 1:  # minor ticks would add nothing but drawing time
            axis.set_minor_locator(NullLocator())


def plain_number(value: float, _position=None) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


def save(fig: Figure, path: Path) -> None:
    """Render with Agg and write a 256-colour PNG: a third of the bytes, no visible change
    for line art."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    width, height = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    palette.save(path, format="PNG")


def file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
