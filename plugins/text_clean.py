"""Clean vendor product text before tokenizing: the usual breakage of scraped catalogs.

``clean_text`` repairs mojibake (``CafÃ©`` -> ``Café``) with ftfy, unescapes HTML entities
(also double-escaped ones such as ``&amp;nbsp;``), removes HTML tags, collapses whitespace and
drops copy-pasted repeats (a sentence or paragraph repeated back to back, or a whole text
pasted twice). Not a component: text backbones call it in ``preprocess``.
"""

from __future__ import annotations

import html
import re

import ftfy

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BLOCK_TAG = re.compile(r"</?(?:br|p|div|li|ul|ol|tr|td|th|table|h[1-6])\b[^<>]*>", re.I)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_PARAGRAPH = re.compile(r"\n\s*\n|\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WHOLE_REPEAT = re.compile(r"^(.+?)(?:\s+\1)+$", re.S)
_MIN_REPEAT_WORDS = 3  # "Bora Bora" is a name; "red silk dress red silk dress" is a paste
# Printable ASCII, tabs and newlines, no '&': nothing ftfy repairs (no mojibake, entities,
# control characters, terminal escapes or \r line breaks) can occur in it, so ftfy is skipped.
_PLAIN = re.compile(r"[\t\n\x20-\x25\x27-\x7e]*")


def _unescape(text: str) -> str:
    for _ in range(3):  # &amp;amp;nbsp; needs more than one pass
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return text


def _drop_consecutive_repeats(items: list[str]) -> list[str]:
    """Remove runs of segments that repeat the run just before them (case-insensitive)."""
    keys = [item.casefold() for item in items]
    width = 1
    while width <= len(items) // 2:
        i = 0
        while i + 2 * width <= len(items):
            if keys[i : i + width] == keys[i + width : i + 2 * width]:
                del items[i + width : i + 2 * width]
                del keys[i + width : i + 2 * width]
            else:
                i += 1
        width += 1
    return items


def clean_text(text: str) -> str:
    """Repair, de-HTML, de-duplicate and whitespace-normalize one product text field."""
    if not _PLAIN.fullmatch(text):
        text = ftfy.fix_text(text)
    text = _unescape(text)
    text = _COMMENT.sub(" ", text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    text = _INVISIBLE.sub("", text.replace("\u00a0", " "))
    segments = [
        sentence
        for paragraph in _PARAGRAPH.split(text)
        for sentence in _SENTENCE.split(" ".join(paragraph.split()))
        if sentence
    ]
    text = " ".join(_drop_consecutive_repeats(segments))
    match = _WHOLE_REPEAT.match(text) if len(text) <= 20_000 else None
    if match and len(match.group(1).split()) >= _MIN_REPEAT_WORDS:
        text = match.group(1)
    return text


__all__ = ["clean_text"]
