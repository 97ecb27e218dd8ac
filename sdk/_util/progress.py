"""Progress of a long phase (feature extraction, prediction, evaluation, catalog generation).

One small API::

    from fashion._util.progress import progress

    with progress("predict", total=len(rows), unit="rows") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

In a terminal it is a live bar on stderr with rows/s and the time left; when stderr is not a
terminal (CI, ``| tee``, a log file) it writes a plain line every ``interval`` seconds
(``FASHION_PROGRESS_INTERVAL``, default 10) and one at the end, so a long run is never silent.
``FASHION_PROGRESS=0`` (or ``enabled=False``) turns it off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressLine:
    """Counts done work and reports it: a live bar in a terminal, plain lines otherwise."""

    def __init__(self, label: str, total: int | None, unit: str, *, stream: TextIO,
                 interval: float, live: bool) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream, self.interval = stream, interval
        self.done = 0
        self.start = time.monotonic()
        self._last_line = self.start
        self._lines = 0
        self._bar = None
        self._task = None
        if live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=Console(file=stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, rate="")

    def rate(self) -> float:
        """Units per second so far."""
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        """One plain line: ``predict: 120/196 rows (61%), 2.1 rows/s, ETA 36s``."""
        rate = self.rate()
        if self.total:
            percent = 100.0 * self.done / self.total
            line = f"{self.label}: {self.done}/{self.total} {self.unit} ({percent:.0f}%)"
        else:
            line = f"{self.label}: {self.done} {self.unit}"
        line += f", {rate:.1f} {self.unit}/s"
        if self.total and rate > 0 and self.done < self.total:
            line += f", ETA {format_seconds((self.total - self.done) / rate)}"
        elif self.done and (not self.total or self.done >= self.total):
            line += f", {format_seconds(time.monotonic() - self.start)}"
        return line

    def update(self, n: int = 1) -> None:
        """``n`` more units are done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done,  # type: ignore[arg-type]
                             rate=f"{self.rate():.1f} {self.unit}/s")
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._write(self.text())

    def _write(self, line: str) -> None:
        self._lines += 1
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.done and (self._lines or time.monotonic() - self.start >= self.interval):
            self._write(self.text())  # the end of a phase that was long enough to report


class _Off(ProgressLine):
    """Progress turned off: counts, prints nothing."""

    def update(self, n: int = 1) -> None:
        self.done += n

    def close(self) -> None:
        pass


@contextmanager
def progress(label: str, total: int | None = None, *, unit: str = "rows",
             enabled: bool | None = None, stream: TextIO | None = None,
             interval: float | None = None) -> Iterator[ProgressLine]:
    """Report the progress of one phase; ``update(n)`` when ``n`` more units are done.

    ``enabled=None`` follows ``FASHION_PROGRESS`` (on unless ``0``). ``stream`` defaults to
    stderr; a terminal gets a live bar, anything else a plain line every ``interval`` seconds.
    """
    stream = stream or sys.stderr
    if enabled is None:
        enabled = os.environ.get("FASHION_PROGRESS", "1") not in ("0", "false", "no")
    if interval is None:
        interval = float(os.environ.get("FASHION_PROGRESS_INTERVAL", "10"))
    live = enabled and hasattr(stream, "isatty") and stream.isatty()
    kind = ProgressLine if enabled else _Off
    line = kind(label, total, unit, stream=stream, interval=interval, live=live)
    try:
        yield line
    finally:
        line.close()


__all__ = ["ProgressLine", "format_seconds", "progress"]
