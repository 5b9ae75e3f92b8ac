"""A one-line progress bar on stderr: images/s, bytes/s, time left; silent off a terminal."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, *, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.total = self.done = self.bytes = 0
        self._started = self._drawn = 0.0
        self._initial = 0

    def start(self, total: int, done: int = 0) -> None:
        self.total, self.done, self._initial = total, done, done
        self._started = time.monotonic()
        self._draw(force=True)

    def advance(self, images: int, nbytes: int = 0) -> None:
        self.done += images
        self.bytes += nbytes
        self._draw()

    def finish(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.2):
            return
        self._drawn = now
        elapsed = max(now - self._started, 1e-9)
        rate = (self.done - self._initial) / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 24)
        self.stream.write(
            f"\r{self.label} [{bar:<24}] {self.done:,}/{self.total:,} {rate:,.0f} img/s "
            f"{_size(self.bytes / elapsed)}/s ETA {_duration(left)}   ")
        self.stream.flush()


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:,.1f} {unit}"
        nbytes /= 1024
    return ""


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan: no rate yet
        return "--:--"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
