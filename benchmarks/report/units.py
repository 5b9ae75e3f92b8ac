"""Numbers as people read them: a unit that keeps three significant digits short."""
from __future__ import annotations

import math

_TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))
_BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("bytes", 1.0))  # decimal, as MB/s


def time_unit(seconds: float) -> tuple[str, float]:
    """The largest unit in which ``seconds`` is at least 1 (ns below that)."""
    return next(((name, scale) for name, scale in _TIME_UNITS if seconds >= scale),
                _TIME_UNITS[-1])


def byte_unit(size: float) -> tuple[str, float]:
    return next(((name, scale) for name, scale in _BYTE_UNITS if size >= scale),
                _BYTE_UNITS[-1])


def format_time(seconds: float) -> str:
    """'574 µs', '1.23 ms', '12.5 s': three significant digits."""
    for name, scale in reversed(_TIME_UNITS):
        text = _significant(seconds / scale)
        if float(text.replace(",", "")) < 1000 or name == "s":
            return f"{text} {name}"
    raise AssertionError("unreachable")


def format_rate(value: float | None) -> str:
    return "—" if value is None else _significant(value)


def format_bytes(size: int | None) -> str:
    return "—" if size is None else f"{size:,}"


def _significant(value: float) -> str:
    """Three significant digits, trailing zeros kept (1.00, 2.20): they say the precision."""
    rounded = float(f"{value:.3g}")
    if abs(rounded) >= 100:
        return f"{rounded:,.0f}"
    if rounded == 0 or abs(rounded) < 0.001:
        return f"{rounded:.3g}"
    return f"{rounded:.{2 - math.floor(math.log10(abs(rounded)))}f}"
