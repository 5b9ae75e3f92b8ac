"""One colour, marker and line style per backend, the same in every figure."""
from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: str = "-"
    filled: bool = True

    def line_kwargs(self) -> dict:
        return dict(color=self.color, marker=self.marker, linestyle=self.linestyle,
                    markerfacecolor=self.color if self.filled else "white",
                    markeredgecolor=self.color, markersize=6, linewidth=1.6)


# A classic reference shares its counterpart's hue, lighter and dashed with hollow
# markers, so the eye pairs "png" with "classic-png" without reading the legend.
KNOWN_STYLES: dict[str, Style] = {
    "png": Style("#1f77b4", "o"),
    "lmdb": Style("#d95f02", "s"),
    "hdf5": Style("#2ca02c", "^"),
    "classic-png": Style("#6baed6", "o", "--", filled=False),
    "classic-lmdb": Style("#fd8d3c", "s", "--", filled=False),
    "classic-hdf5": Style("#74c476", "^", "--", filled=False),
    "raw": Style("#404040", "D", ":"),
}

# Unknown backends: colours and markers the known names do not use, picked by a
# stable hash of the name (not hash(), which changes between interpreter runs).
_FALLBACK_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
_FALLBACK_MARKERS = ("v", "P", "X", "h", "<", ">")


def style_for(backend: str) -> Style:
    if backend in KNOWN_STYLES:
        return KNOWN_STYLES[backend]
    digest = zlib.crc32(backend.encode("utf-8"))
    return Style(_FALLBACK_COLORS[digest % len(_FALLBACK_COLORS)],
                 _FALLBACK_MARKERS[(digest // len(_FALLBACK_COLORS)) % len(_FALLBACK_MARKERS)],
                 "-.")


def backend_order(backends) -> list[str]:
    """Known backends in table order, then any others alphabetically."""
    known = list(KNOWN_STYLES)
    return sorted(set(backends), key=lambda name: (known.index(name) if name in known
                                                   else len(known), name))
