"""Run against run: the ratio of medians per (backend, operation, N), largest first."""
from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from benchmarks.report.canvas import DPI, readable_log_ticks
from benchmarks.report.runs import Result, Run
from benchmarks.report.styles import backend_order, style_for


@dataclass(frozen=True)
class Ratio:
    base: Result
    new: Result

    @property
    def value(self) -> float:
        """Above 1: the new run is slower."""
        return self.new.median / self.base.median

    @property
    def name(self) -> str:
        return f"{self.new.operation} · {self.new.backend} · N={self.new.n:,}"


def ratios(base: Run, new: Run) -> list[Ratio]:
    """The (backend, operation, N) both runs hold, largest ratio (worst regression) first."""
    shared = [Ratio(base.results[key], new.results[key])
              for key in new.results if key in base.results]
    return sorted(shared, key=lambda ratio: ratio.value, reverse=True)


def ratio_figure(base: Run, new: Run, pairs: list[Ratio]) -> Figure:
    """Horizontal bars from 1 to each ratio on a log axis; the worst regression on top."""
    fig = Figure(figsize=(9, 2.2 + 0.2 * len(pairs)), dpi=DPI, layout="constrained")
    datasets = sorted(set(base.datasets) | set(new.datasets))
    fig.suptitle(f"{new.label} against {base.label}: ratio of medians per operation, backend "
                 f"and N · data: {', '.join(datasets) or 'unknown'}", fontsize=11)
    backends = backend_order(r.new.backend for r in pairs)
    fig.legend(handles=[Patch(color=style_for(b).color, label=b) for b in backends],
               loc="outside lower center", ncol=min(len(backends), 8), frameon=False)
    ax = fig.subplots()
    _bars(ax, list(reversed(pairs)))  # barh draws the first row at the bottom
    ax.set_xlabel(f"median in {new.label} ÷ median in {base.label} "
                  f"(log scale; right of 1, shaded: {new.label} is slower)")
    # Tall charts get the scale on top as well, next to the worst regressions.
    ax.tick_params(axis="x", top=True, labeltop=True)
    return fig


def _bars(ax, rows: list[Ratio]) -> None:
    ax.barh(range(len(rows)), [r.value - 1 for r in rows], left=1, height=0.7,
            color=[style_for(r.new.backend).color for r in rows], edgecolor="#333333",
            linewidth=0.5)
    ax.set_yticks(range(len(rows)), [r.name for r in rows], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    reach = max(1.5, *(max(r.value, 1 / r.value) for r in rows)) ** 1.25
    ax.set_xscale("log")
    ax.set_xlim(1 / reach, reach)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvspan(1.0, reach, color="#fde0dd", zorder=0)
    ax.grid(True, axis="x", which="major", color="#dddddd", linewidth=0.7)
    readable_log_ticks(ax)
    for row, ratio in enumerate(rows):
        slower = ratio.value >= 1
        ax.annotate(f"×{ratio.value:.2f}", (ratio.value, row), xytext=(3 if slower else -3, 0),
                    textcoords="offset points", va="center", fontsize=7,
                    ha="left" if slower else "right")
