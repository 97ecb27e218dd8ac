"""The shared progress display: plain lines when the output is not a terminal, a bar in one."""

from __future__ import annotations

import io
import re

import pytest

from fashion._util.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_with_rate_and_eta_when_not_a_terminal():
    stream = io.StringIO()
    with progress("predict", total=4, stream=stream, interval=0, enabled=True) as bar:
        bar.update(1)
        bar.update(3)
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"predict: 1/4 rows \(25%\), [\d.]+ rows/s(, ETA \d+s)?", lines[0]), lines
    assert lines[-1].startswith("predict: 4/4 rows (100%)")
    assert "\x1b[" not in stream.getvalue()  # no terminal control codes in a log


def test_quiet_when_short_off_or_disabled_by_env(monkeypatch: pytest.MonkeyPatch):
    stream = io.StringIO()
    with progress("evaluate", total=3, stream=stream, interval=60, enabled=True) as bar:
        bar.update(3)
    assert stream.getvalue() == ""  # a phase shorter than one interval says nothing
    monkeypatch.setenv("FASHION_PROGRESS", "0")
    with progress("evaluate", total=3, stream=stream, interval=0) as bar:
        bar.update(3)
    assert stream.getvalue() == "" and bar.done == 3


def test_live_bar_in_a_terminal():
    stream = _Terminal()
    with progress("predict", total=10, stream=stream, enabled=True) as bar:
        bar.update(10)
    text = stream.getvalue()
    assert "predict" in text and "10/10" in text and "rows/s" in text and "ETA" in text
