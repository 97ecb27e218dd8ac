"""The built-in labelling functions: keywords (with negation and scope) and regular expressions.

Interface (:mod:`fashion.contract.labelling`, re-exported here): a
:class:`LabellingFunction` has a ``name``, the ``attribute`` it labels and its ``labels``, and
``votes(rows) -> list[str | None]``: one vote per :class:`LabellingRow`, ``None`` to abstain.
Rows are read from a manifest by :func:`labelling_rows` (cleaned text, resolved image paths, raw
cells). Any other source of votes (a plugin's function, zero-shot image-text scores) plugs in
through the same interface and the ``register_labelling_functions`` hook.

``keyword`` matches whole words and phrases, never parts of words ("sleeveless" is not
"sleeve"), after folding case and accents ("Manches Longues" = "manches longues"), and
decides two things the way vendor text needs:

- **negation**: a word is not a claim when a negation cue ("no", "not", "without", "non",
  "sans", "pas de", "sin", "ohne", "senza", "kein") stands within :data:`NEGATION_WINDOW` words
  before it in the same clause ("no hood", "not lined"); a phrase that holds its own negation
  ("no sleeves", "sans manches") is matched as the phrase and counts.
- **scope**: text after a care or shipping marker ("care:", "care instructions", "entretien",
  "machine wash", "pflege") is not a claim about the product, nor is any clause holding one.

:func:`taxonomy_functions` makes one keyword function per label and text field from the
attribute's labels and vendor synonyms (several languages). ``regex`` matches a pattern against
one field (case-insensitive by default).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from fashion.contract.base import ComponentOptions
from fashion.contract.hookspecs import Register, hookimpl
from fashion.contract.labelling import LabellingFunction, LabellingRow
from fashion.errors import ConfigError

NEGATIONS: tuple[str, ...] = (
    "no", "not", "without", "non", "never", "sans", "pas", "sin", "ohne", "kein", "keine",
    "senza", "nessun", "free of",
)
"""Folded words that negate a keyword which follows them in the same clause."""
NEGATION_WINDOW = 3
"""How many words before a keyword a negation cue may stand."""
CARE_MARKERS: tuple[str, ...] = (
    "care", "care instructions", "care instruction", "wash", "washable", "machine wash", "hand wash",
    "do not tumble dry", "tumble dry", "dry clean", "entretien", "lavage", "pflege",
    "pflegehinweis", "cuidado", "cuidados", "lavaggio", "shipping", "free shipping", "returns",
)
"""Folded words that open a care or shipping part of a text: what follows is not a claim."""
KEYWORD_FIELDS: tuple[str, ...] = ("title", "description")
"""The fields the taxonomy's keyword functions read."""

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"[.;!?\n|]+(?:\s|$)|[.;!?\n|]{2,}")
_CLAUSE = re.compile(r"[,:()\[\]/]+|\s[-\u2013\u2014]\s|\bbut\b|\bmais\b|\baber\b|\bpero\b")
_TAIL_OPENERS = ("care", "entretien", "pflege", "cuidado", "lavaggio", "shipping", "returns")


def fold(text: str) -> str:
    """Case and accents folded, ``_``/``-`` as spaces: ``"Manches-Longues"`` -> ``"manches longues"``."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return text.replace("_", " ").replace("-", " ").replace("\u2019", "'")


def words(text: str) -> list[str]:
    """The folded words of ``text``."""
    return _WORD.findall(fold(text))


def clauses(text: str) -> list[list[str]]:
    """The clauses of ``text`` as lists of folded words: a sentence holding a care or shipping
    word is left out, and a sentence that opens with one ("Care: ...") ends the text."""
    out: list[list[str]] = []
    for sentence in _SENTENCE.split(fold(text)):
        tokens = _WORD.findall(sentence)
        if not tokens:
            continue
        if _find(tokens, _CARE_PHRASES) is not None:
            if tokens[0] in _TAIL_OPENERS:
                break
            continue
        out.extend(found for part in _CLAUSE.split(sentence) if (found := _WORD.findall(part)))
    return out


def _phrases(items: Iterable[str]) -> list[tuple[str, ...]]:
    return sorted({tuple(words(w)) for w in items if words(w)}, key=len, reverse=True)


_CARE_PHRASES = _phrases(CARE_MARKERS)
_NEGATION_PHRASES = _phrases(NEGATIONS)


def _find(tokens: Sequence[str], phrases: Sequence[tuple[str, ...]]) -> int | None:
    for i in range(len(tokens)):
        for phrase in phrases:
            if tuple(tokens[i : i + len(phrase)]) == phrase:
                return i
    return None


def _negated(tokens: Sequence[str], start: int) -> bool:
    window = tokens[max(0, start - NEGATION_WINDOW) : start]
    return _find(window, _NEGATION_PHRASES) is not None


def keyword_hits(text: str, table: Mapping[tuple[str, ...], str]) -> list[tuple[str, bool]]:
    """Every phrase of ``table`` (folded words -> label) in ``text``, longest first and never
    overlapping, as ``(label, negated)``; care and shipping clauses are left out."""
    phrases = sorted(table, key=len, reverse=True)
    hits: list[tuple[str, bool]] = []
    for tokens in clauses(text):
        i = 0
        while i < len(tokens):
            for phrase in phrases:
                if tuple(tokens[i : i + len(phrase)]) == phrase:
                    hits.append((table[phrase], _negated(tokens, i)))
                    i += len(phrase)
                    break
            else:
                i += 1
    return hits


class KeywordOptions(ComponentOptions):
    """A keyword function: vote ``label`` when one of ``keywords`` is claimed in ``field``."""

    label: str = Field(description="The label voted when a keyword is claimed.")
    keywords: list[str] = Field(min_length=1, description="Words or phrases (any case, accents).")
    field: str = Field("title", description="The text field (title, description, brand) or column read.")
    negation: bool = Field(True, description="A negated keyword ('no hood') is not a claim.")


class Keyword(LabellingFunction):
    """Votes its label when one of its keywords is claimed (not negated, not in a care tail);
    abstains otherwise, and when it sees its label negated."""

    name = "keyword"
    Options = KeywordOptions
    options: KeywordOptions

    def __init__(self, options: Any = None, *, attribute: str, labels: Sequence[str],
                 name: str | None = None) -> None:
        super().__init__(options, attribute=attribute, labels=labels, name=name)
        check_label(self.options.label, self.labels, self.name, attribute)
        self._table = {tuple(words(k)): self.options.label for k in self.options.keywords if words(k)}
        if not self._table:
            raise ConfigError(f"labelling function '{self.name}': no keyword holds a letter or "
                              "digit; give words such as 'v neck'.")

    def votes(self, rows: Sequence[LabellingRow]) -> list[str | None]:
        out: list[str | None] = []
        for row in rows:
            hits = keyword_hits(row.field_text(self.options.field), self._table)
            claimed = [label for label, negated in hits if not (negated and self.options.negation)]
            out.append(claimed[0] if claimed else None)
        return out


class RegexOptions(ComponentOptions):
    """A regex function: vote ``label`` when ``pattern`` matches ``field``."""

    label: str = Field(description="The label voted when the pattern matches.")
    pattern: str = Field(description="A Python regular expression.")
    field: str = Field("title", description="The text field (title, description, brand) or column read.")
    ignore_case: bool = Field(True, description="Match without regard to case.")


class Regex(LabellingFunction):
    """Votes its label when its pattern matches the field; abstains otherwise."""

    name = "regex"
    Options = RegexOptions
    options: RegexOptions

    def __init__(self, options: Any = None, *, attribute: str, labels: Sequence[str],
                 name: str | None = None) -> None:
        super().__init__(options, attribute=attribute, labels=labels, name=name)
        check_label(self.options.label, self.labels, self.name, attribute)
        try:
            self._pattern = re.compile(self.options.pattern, re.I if self.options.ignore_case else 0)
        except re.error as exc:
            raise ConfigError(f"labelling function '{self.name}': pattern {self.options.pattern!r} "
                              f"is not a valid regular expression ({exc}); fix it.") from None

    def votes(self, rows: Sequence[LabellingRow]) -> list[str | None]:
        label = self.options.label
        return [label if self._pattern.search(row.field_text(self.options.field)) else None
                for row in rows]


def check_label(label: str, labels: Sequence[str], function: str, attribute: str) -> None:
    """A function voting a label the attribute does not have is a :class:`ConfigError`."""
    if label not in labels:
        raise ConfigError(f"labelling function '{function}' votes {label!r}, which is not a label of "
                          f"{attribute} ({', '.join(labels)}); use one of them or add it with --labels.")


def taxonomy_functions(attribute: str, labels: Sequence[str], synonyms: Mapping[str, str],
                       fields: Sequence[str] = KEYWORD_FIELDS) -> list[LabellingFunction]:
    """One keyword function per label and text field (``title:long``, ``description:long``):
    the label's canonical words ("long", "long sleeve" for ``long``) are not used alone when
    they are too short to be a claim; its vendor synonyms (any language) are."""
    by_label: dict[str, set[str]] = {label: set() for label in labels}
    for word, label in synonyms.items():
        if label in by_label:
            by_label[label].add(word)
    for label in labels:
        if len(label) > 5 or "_" in label:  # "sleeveless", "polka_dot": a claim on their own
            by_label[label].add(label.replace("_", " "))
    out: list[LabellingFunction] = []
    for field_name in fields:
        for label in labels:
            if by_label[label]:
                out.append(Keyword({"label": label, "keywords": sorted(by_label[label]), "field": field_name},
                                   attribute=attribute, labels=labels, name=f"{field_name}:{label}"))
    return out


def labelling_rows(paths: Sequence[str | Path]) -> list[LabellingRow]:
    """The products of ``paths`` (manifests) as labelling rows; an unreadable record is a
    :class:`~fashion.errors.DataError` naming ``file:line``."""
    from fashion.data.manifest import iter_manifest
    from fashion.data.text import clean_text
    from fashion.model.inputs import row_to_product

    rows: list[LabellingRow] = []
    for path in paths:
        for raw in iter_manifest(path):
            product = row_to_product(raw, path)
            text = {k: clean_text(v) for k, v in product.text_fields().items()}
            rows.append(LabellingRow(id=product.id, text={k: v for k, v in text.items() if v},
                                     images=tuple(str(i) for i in product.images),
                                     values=dict(raw.values), where=f"{path}:{raw.line or raw.row}"))
    return rows


@hookimpl
def register_labelling_functions(register: Register) -> None:
    register(Keyword)
    register(Regex)


__all__ = ["CARE_MARKERS", "NEGATIONS", "Keyword", "KeywordOptions", "LabellingFunction",
           "LabellingRow", "Regex", "RegexOptions", "check_label", "clauses", "fold",
           "keyword_hits", "labelling_rows", "register_labelling_functions", "taxonomy_functions",
           "words"]
