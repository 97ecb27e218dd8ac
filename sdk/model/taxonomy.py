"""Attribute taxonomies: canonical labels plus the words vendors use for them.

A :class:`Taxonomy` names one attribute (``color``), its canonical labels (lowercase snake_case,
``"polka_dot"``) and a synonym table (``"ruby" -> "red"``). :meth:`Taxonomy.normalize` maps a
raw catalog value to its canonical label whatever the casing, spacing, accents or separators
(``"Polka-Dot"``, ``"POLKA DOT"`` and ``"polka_dot"`` all give ``"polka_dot"``);
:meth:`Taxonomy.resolve` also tells an empty cell (missing) apart from a value nobody knows.

Built-in taxonomies ship as ``fashion/model/taxonomies/*.json`` and are read, with a team's
own, by :mod:`fashion.model.taxonomy_files`. A team keeps its own in a project file (``fashion-attributes.json``, or a TOML file with ``[attributes.NAME]`` tables)::

    {"attributes": {"fit": {"labels": ["slim", "regular"], "synonyms": {"skinny": "slim"}}}}
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import Field, PrivateAttr, model_validator

from fashion._util.config import StrictModel

MULTILABEL_SEPARATOR = "|"

_LABEL_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_SEPARATORS_RE = re.compile(r"[\s_\-]+")
_EDGE_PUNCTUATION = " .,;:!?'\"`()[]{}"


def normalize_text(value: str) -> str:
    """Fold ``value`` for matching: strip accents, casefold, ``_``/``-``/runs of spaces -> one space.

    Punctuation around the value (``"Red."``, ``"'navy'"``) is dropped as well.

    >>> normalize_text("  Crème_Brûlée--POLKA   dot ")
    'creme brulee polka dot'
    """
    text = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold()
    text = _SEPARATORS_RE.sub(" ", text)
    return text.strip(_EDGE_PUNCTUATION).strip()


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


class ComponentSpec(StrictModel):
    """A registered component name and its options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


NOT_APPLICABLE_WORDS: tuple[str, ...] = (
    "n/a", "na", "n.a.", "none", "-", "--", "—", "not applicable", "does not apply",
)
"""Vendor values that mean "this attribute does not apply to this product" for every attribute
(an attribute adds its own in ``not_applicable``). A label or synonym spelled the same wins."""


class Resolution(NamedTuple):
    """What a raw value means: a canonical ``label``, a ``missing`` cell, a ``not_applicable``
    marker (``"n/a"``, ``"none"``, ``"-"``), or none of these (unknown)."""

    label: str | None
    missing: bool
    not_applicable: bool = False

    @property
    def unknown(self) -> bool:
        """True for a non-empty value that matches no label, synonym or not-applicable word."""
        return self.label is None and not self.missing and not self.not_applicable

    @property
    def labels(self) -> tuple[str, ...]:
        """The canonical labels as a tuple (several for a multilabel value, none when absent)."""
        return tuple(self.label.split(MULTILABEL_SEPARATOR)) if self.label else ()


class Calibration(StrictModel):
    """Temperature scaling fitted on validation data: probabilities = softmax(logits / T)."""

    temperature: float = Field(gt=0.0)
    ece_before: float | None = None  # expected calibration error on the fitting data, raw
    ece_after: float | None = None  # … and after scaling
    rows: int = 0  # validation rows it was fitted on


class Abstention(StrictModel):
    """The score under which ``abstain=True`` predictions return no label (fitted on validation)."""

    min_precision: float = Field(ge=0.0, le=1.0)  # the precision asked for
    threshold: float = Field(ge=0.0, le=1.0)  # calibrated top-1 score needed to publish a label
    precision: float | None = None  # measured on the validation rows at that threshold
    coverage: float | None = None  # share of validation rows that keep a label
    reached: bool = True  # False: no threshold reached min_precision; the strictest was kept


DEFAULT_HEAD = "linear"
"""The head plugin an attribute gets when none is named (model specs, training, add-attribute,
the CLI's ``--head``); a multilabel attribute without a head gets ``multilabel``."""


class AttributeSpec(StrictModel):
    """One attribute, the one definition used by taxonomies, model specs, training and bundles.

    - ``labels``, ``synonyms`` (vendor word -> label), ``multilabel``, ``description``: the
      vocabulary; :meth:`normalize` / :meth:`resolve` map raw catalog values onto it.
    - ``head``: the registered head and its options (default :data:`DEFAULT_HEAD`;
      ``multilabel`` for a multilabel attribute); ``threshold``: a score under which a label is
      never published.
    - ``applies_to``: when the attribute applies, as ``{other attribute: [its labels]}`` (e.g.
      ``{"category": ["t_shirt", "dress"]}``); empty = always. Out of scope, prediction answers
      ``not_applicable`` and training ignores the head's loss.
    - ``not_applicable``: extra vendor values meaning "does not apply" (besides
      :data:`NOT_APPLICABLE_WORDS`).
    - ``changed_by``: the train-time augmentations that would change this attribute's label
      (``["hue"]`` for a color, ``["flip"]`` for a logo side); training refuses a view that
      applies one. ``None`` (default): ``["hue"]`` for an attribute named ``color``/``colour``
      (or ending in ``_color``), none otherwise.
    - ``calibration`` / ``abstention``: fitted on validation data (``fashion.trust``); absent in
      older bundles, which means raw scores and no abstention.
    """

    labels: list[str]
    head: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name=DEFAULT_HEAD))
    synonyms: dict[str, str] = Field(default_factory=dict)
    multilabel: bool = False
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    description: str = ""
    applies_to: dict[str, list[str]] = Field(default_factory=dict)
    not_applicable: list[str] = Field(default_factory=list)
    changed_by: list[str] | None = None
    calibration: Calibration | None = None
    abstention: Abstention | None = None

    _table: dict[str, str] | None = PrivateAttr(default=None)
    _compact: dict[str, str | None] | None = PrivateAttr(default=None)
    _na: frozenset[str] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _head_by_name(cls, data: Any) -> Any:
        # bundles written before format 3 list the head by its name only
        if isinstance(data, dict) and isinstance(data.get("head"), str):
            data = {**data, "head": {"name": data["head"]}}
        if isinstance(data, dict) and data.get("multilabel") and "head" not in data:
            data = {**data, "head": {"name": "multilabel"}}
        return data

    @model_validator(mode="after")
    def _check_attribute(self) -> AttributeSpec:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate labels in {self.labels}")
        bad = {k: v for k, v in self.synonyms.items() if v not in self.labels}
        if bad:
            raise ValueError(
                f"synonyms point at labels that do not exist ({bad}: not a label); use one of "
                f"{self.labels} or add the target to labels"
            )
        if self.head.name == "multilabel" and not self.multilabel:
            self.multilabel = True
        for other, values in self.applies_to.items():
            if not values:
                raise ValueError(
                    f"applies_to.{other} lists no labels; list the {other} labels the attribute "
                    "applies to, or drop the key"
                )
        return self

    # -------------------------------------------------------------- normalization

    def _tables(self) -> tuple[dict[str, str], dict[str, str | None]]:
        if self._table is None or self._compact is None:
            table = {normalize_text(word): target for word, target in self.synonyms.items()}
            table.update({normalize_text(label): label for label in self.labels})
            compact: dict[str, str | None] = {}
            for key, target in table.items():
                squeezed = key.replace(" ", "")
                # a spelling without spaces ("polkadot") is only trusted when it is unambiguous
                compact[squeezed] = target if compact.get(squeezed, target) == target else None
            self._table, self._compact = table, compact
        return self._table, self._compact

    def _lookup(self, value: str) -> str | None:
        table, compact = self._tables()
        key = normalize_text(value)
        found = table.get(key) or compact.get(key.replace(" ", ""))
        if found is None and not value.isascii():
            import ftfy  # repairs mojibake such as "CrÃ¨me"; imported only when needed

            fixed = ftfy.fix_text(value)
            if fixed != value:
                key = normalize_text(fixed)
                found = table.get(key) or compact.get(key.replace(" ", ""))
        return found

    def is_not_applicable(self, value: str) -> bool:
        """True when ``value`` says the attribute does not apply ("n/a", "none", "-", …) and
        no label or synonym reads the same."""
        if self._na is None:
            words = (*NOT_APPLICABLE_WORDS, *self.not_applicable)
            self._na = frozenset({w.strip().casefold() for w in words}
                                 | {normalize_text(w) for w in words} - {""})
        text = value.strip()
        if self._lookup(text) is not None:
            return False
        return text.casefold() in self._na or normalize_text(text) in self._na

    def normalize_multi(self, value: str | None) -> list[str] | None:
        """Canonical labels of a ``"a|b"`` value, sorted; ``None`` when missing or any part unknown.

        A single-label attribute returns a one-element list for a known value.
        """
        if _is_missing(value):
            return None
        assert value is not None
        parts = [value] if not self.multilabel else value.split(MULTILABEL_SEPARATOR)
        labels: set[str] = set()
        for part in parts:
            if _is_missing(part):
                continue
            label = self._lookup(part)
            if label is None:
                return None
            labels.add(label)
        return sorted(labels) or None

    def normalize(self, value: str | None) -> str | None:
        """Canonical label for a raw value, or ``None`` when it is empty, unknown or not applicable.

        Multilabel attributes accept ``"floral|Stripes"`` and return the sorted canonical labels
        joined by ``|`` (``"floral|striped"``); use :meth:`normalize_multi` for a list. Use
        :meth:`resolve` to tell an empty cell, a not-applicable marker and an unknown value apart.
        """
        labels = self.normalize_multi(value)
        return MULTILABEL_SEPARATOR.join(labels) if labels else None

    def resolve(self, value: object) -> Resolution:
        """Resolve a raw cell: ``Resolution(label, missing, not_applicable)``.

        ``missing`` is True for ``None``, NaN and blank strings; ``not_applicable`` for "n/a",
        "none", "-" and the attribute's own ``not_applicable`` words; a non-empty value that
        matches nothing gives ``Resolution(None, False)`` (``.unknown`` is True).
        """
        if _is_missing(value):
            return Resolution(None, True)
        label = self.normalize(str(value))
        if label is None and self.is_not_applicable(str(value)):
            return Resolution(None, False, True)
        return Resolution(label, False)

    def applies(self, known: Mapping[str, object]) -> bool | None:
        """Whether the attribute applies given other attributes' labels (``known``): True/False,
        or ``None`` when a label it depends on is not known."""
        for other, allowed in self.applies_to.items():
            value = known.get(other)
            if value is None:
                return None
            values = value if isinstance(value, (list, tuple)) else [value]
            if not any(v in allowed for v in values):
                return False
        return True


class Taxonomy(AttributeSpec):
    """A named attribute definition, as kept in taxonomy files: canonical labels are lowercase
    snake_case and no two vendor words read the same after normalization."""

    name: str

    @model_validator(mode="after")
    def _check(self) -> Taxonomy:
        if not _LABEL_RE.match(self.name):
            raise ValueError(
                f"taxonomy name {self.name!r} must be lowercase snake_case, e.g. 'sleeve_length'"
            )
        if not self.labels:
            raise ValueError(f"taxonomy {self.name!r} has no labels: list at least one label")
        bad = [label for label in self.labels if not _LABEL_RE.match(label)]
        if bad:
            raise ValueError(
                f"labels {bad} of taxonomy {self.name!r} are not lowercase snake_case: write them "
                "like 'polka_dot' and put the vendor spelling in synonyms"
            )
        owner = {normalize_text(label): label for label in self.labels}
        for word, target in self.synonyms.items():
            key = normalize_text(word)
            if not key:
                raise ValueError(
                    f"taxonomy {self.name!r} has an empty synonym mapped to {target!r}"
                )
            if owner.setdefault(key, target) != target:
                raise ValueError(
                    f"synonym {word!r} of taxonomy {self.name!r} maps to {target!r} but reads the "
                    f"same as {owner[key]!r} after normalization; remove one of them"
                )
        return self

    def spec(self) -> AttributeSpec:
        """This definition as a model spec's attribute (everything but the name)."""
        return AttributeSpec.model_validate(self.model_dump(exclude={"name"}))


__all__ = [
    "NOT_APPLICABLE_WORDS",
    "Abstention",
    "AttributeSpec",
    "Calibration",
    "ComponentSpec",
    "MULTILABEL_SEPARATOR",
    "Resolution",
    "Taxonomy",
    "normalize_text",
]
