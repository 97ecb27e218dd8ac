"""Attribute filters of a search: ``--where color=red --where category=dress``.

A filter keeps the rows whose *predicted* attribute is the value (for a multilabel attribute:
whose labels include it) with a score of at least the attribute's minimum (by default the
bundle's abstention threshold, recorded in the vectors file). Values of one attribute are
alternatives (``--where color=red --where color=black``: red or black); attributes are all
required. The rows are kept in per-attribute arrays, so a filter is a few numpy comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fashion.errors import ConfigError
from fashion.search.vectors import VectorsInfo

Conditions = dict[str, list[str]]


def parse_conditions(values: Iterable[str] | Mapping[str, Any] | None, option: str = "--where") -> Conditions:
    """``["color=red", "category=dress"]`` or ``{"color": "red"}`` as ``{attribute: [values]}``."""
    out: Conditions = {}
    if values is None:
        return out
    if isinstance(values, Mapping):
        for name, value in values.items():
            items = [value] if isinstance(value, str) else list(value)
            if not items or not all(isinstance(v, str) and v for v in items):
                raise ConfigError(f"{option} {name}: give a label (a non-empty string) or a list "
                                  f"of labels, got {value!r}.")
            out.setdefault(str(name), []).extend(items)
        return out
    for text in values:
        name, sep, value = str(text).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{option} {text!r}: write ATTRIBUTE=LABEL, e.g. {option} color=red.")
        out.setdefault(name.strip(), []).append(value.strip())
    return out


@dataclass
class Attributes:
    """The predicted attributes of the indexed rows: label codes and scores per attribute."""

    info: VectorsInfo
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # (n,) int32, or (n, L) bool
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # (n,) float32

    @classmethod
    def empty(cls, info: VectorsInfo) -> Attributes:
        out = cls(info)
        for name, attribute in info.attributes.items():
            out.codes[name] = (np.zeros((0, len(attribute.labels)), bool) if attribute.multilabel
                               else np.zeros(0, np.int32))
            out.scores[name] = np.zeros(0, np.float32)
        return out

    def encode(self, name: str, labels: list[Any], scores: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Arrow columns of one attribute as (codes, scores); an unknown or missing label is no
        label (it matches no filter)."""
        attribute = self.info.attributes[name]
        where = {label: i for i, label in enumerate(attribute.labels)}
        if attribute.multilabel:
            codes = np.zeros((len(labels), len(attribute.labels)), bool)
            for row, value in enumerate(labels):
                for label in value or []:
                    if label in where:
                        codes[row, where[label]] = True
        else:
            codes = np.asarray([where.get(v, -1) if v is not None else -1 for v in labels],
                               np.int32)
        values = np.asarray([np.nan if s is None else s for s in scores], np.float32)
        return codes, np.nan_to_num(values, nan=-1.0)

    def append(self, columns: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for name, (codes, scores) in columns.items():
            self.codes[name] = np.concatenate([self.codes[name], codes])
            self.scores[name] = np.concatenate([self.scores[name], scores])

    def take(self, rows: np.ndarray) -> Attributes:
        return Attributes(self.info, {n: c[rows] for n, c in self.codes.items()},
                          {n: s[rows] for n, s in self.scores.items()})

    def label(self, name: str, row: int) -> Any:
        labels = self.info.attributes[name].labels
        code = self.codes[name][row]
        if self.info.attributes[name].multilabel:
            return [labels[i] for i in np.flatnonzero(code)]
        return labels[int(code)] if code >= 0 else None

    def row(self, row: int) -> dict[str, dict[str, Any]]:
        return {n: {"label": self.label(n, row), "score": float(self.scores[n][row])}
                for n in self.codes}

    def mask(self, conditions: Conditions, min_score: float | None = None) -> np.ndarray | None:
        """The rows that meet every condition (``None``: no condition)."""
        if not conditions:
            return None
        mask: np.ndarray | None = None
        for name, values in conditions.items():
            if name not in self.info.attributes:
                known = ", ".join(self.info.attributes) or "none"
                raise ConfigError(f"the index has no attribute {name!r} to filter on; its "
                                  f"attributes are: {known}.")
            attribute = self.info.attributes[name]
            unknown = [v for v in values if v not in attribute.labels]
            if unknown:
                raise ConfigError(f"{name} has no label {unknown[0]!r}; its labels are: "
                                  f"{', '.join(attribute.labels)}.")
            wanted = [attribute.labels.index(v) for v in values]
            codes = self.codes[name]
            if attribute.multilabel:
                hit = codes[:, wanted].any(axis=1)
            else:
                hit = codes == wanted[0] if len(wanted) == 1 else np.isin(codes, wanted)
            floor = attribute.min_score if min_score is None else min_score
            hit &= self.scores[name] >= floor
            mask = hit if mask is None else mask & hit
        return mask


__all__ = ["Attributes", "Conditions", "parse_conditions"]
