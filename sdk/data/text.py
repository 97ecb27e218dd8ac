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
_MIN_REPEAT_WORDS = 3
#: Repeated runs of up to this many sentences are removed wherever they are.
MAX_REPEAT_WIDTH = 16
#: Characters of a field read at all (cut at a space): the text backbone reads a few hundred
#: tokens, and cleaning a 5 MB description would be wasted time.
MAX_INPUT_CHARS = 65_536
#: Characters of cleaned text handed to the tokenizer.
MAX_OUTPUT_CHARS = 8_192  # "Bora Bora" is a name; "red silk dress red silk dress" is a paste
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
    """Remove runs of segments that repeat the run just before them (case-insensitive).

    One pass per run width up to :data:`MAX_REPEAT_WIDTH`, each linear in the number of segments
    (a kept segment is compared with the next ones, never deleted from the middle of a list), so
    a text of many thousand sentences is cleaned in a fraction of a second. A whole text pasted
    twice, however long, is caught by :func:`_whole_repeat`.
    """
    keys = [item.casefold() for item in items]
    for width in range(1, min(MAX_REPEAT_WIDTH, len(items) // 2) + 1):
        kept: list[int] = []
        i = 0
        while i < len(keys):
            if len(kept) >= width and i + width <= len(keys) and all(
                keys[kept[-width + k]] == keys[i + k] for k in range(width)
            ):
                i += width  # the run just kept repeats here: skip the copy
            else:
                kept.append(i)
                i += 1
        items, keys = [items[i] for i in kept], [keys[i] for i in kept]
    return _whole_repeat(items, keys)


def _whole_repeat(items: list[str], keys: list[str]) -> list[str]:
    """The first copy of segments that are one block pasted k times (k >= 2), else ``items``."""
    n = len(keys)
    for copies in range(2, n + 1):
        if n % copies:
            continue
        size = n // copies
        if size <= MAX_REPEAT_WIDTH:
            break  # short blocks were handled run by run
        if all(keys[j] == keys[j % size] for j in range(size, n)):
            return items[:size]
    return items


def clean_text(text: str) -> str:
    """Repair, de-HTML, de-duplicate and whitespace-normalize one product text field.

    Linear in the length of the text; only the first :data:`MAX_INPUT_CHARS` characters are
    read and at most :data:`MAX_OUTPUT_CHARS` are returned (both cut at a space).
    """
    text = _cut(text, MAX_INPUT_CHARS)
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
    return _cut(text, MAX_OUTPUT_CHARS)


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at the last space when there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit // 2 else head


__all__ = ["MAX_INPUT_CHARS", "MAX_OUTPUT_CHARS", "clean_text"]
