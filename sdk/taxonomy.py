"""Attribute taxonomies: canonical labels plus the words vendors use for them.

A :class:`Taxonomy` names one attribute (``color``), its canonical labels (lowercase snake_case,
``"polka_dot"``) and a synonym table (``"ruby" -> "red"``). :meth:`Taxonomy.normalize` maps a
raw catalog value to its canonical label whatever the casing, spacing, accents or separators
(``"Polka-Dot"``, ``"POLKA DOT"`` and ``"polka_dot"`` all give ``"polka_dot"``);
:meth:`Taxonomy.resolve` also tells an empty cell (missing) apart from a value nobody knows.

Built-in taxonomies ship as ``fashion/taxonomies/*.json``. A team keeps its own in a
project file (``fashion-attributes.json``, or a TOML file with ``[attributes.NAME]`` tables)::

    {"attributes": {"fit": {"labels": ["slim", "regular"], "synonyms": {"skinny": "slim"}}}}
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, model_validator

from ._config import explain_validation_error
from ._files import atomic_write_text
from .errors import ConfigError

PROJECT_FILE = "fashion-attributes.json"
"""Default name of a team's project taxonomy file."""

MULTILABEL_SEPARATOR = "|"

_TAXONOMY_DIR = Path(__file__).with_name("taxonomies")
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


class Resolution(NamedTuple):
    """What a raw value means: a canonical ``label``, a ``missing`` cell, or neither (unknown)."""

    label: str | None
    missing: bool

    @property
    def unknown(self) -> bool:
        """True for a non-empty value that matches no label or synonym."""
        return self.label is None and not self.missing

    @property
    def labels(self) -> tuple[str, ...]:
        """The canonical labels as a tuple (several for a multilabel value, none when absent)."""
        return tuple(self.label.split(MULTILABEL_SEPARATOR)) if self.label else ()


class Taxonomy(BaseModel):
    """One attribute's canonical labels and the vendor words that mean them."""

    model_config = ConfigDict(extra="forbid")

    name: str
    labels: list[str]
    synonyms: dict[str, str] = {}
    multilabel: bool = False
    description: str = ""

    _table: dict[str, str] | None = PrivateAttr(default=None)
    _compact: dict[str, str | None] | None = PrivateAttr(default=None)

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
        duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"taxonomy {self.name!r} lists labels {duplicates} more than once")
        known = set(self.labels)
        owner = {normalize_text(label): label for label in self.labels}
        for word, target in self.synonyms.items():
            if target not in known:
                raise ValueError(
                    f"synonym {word!r} of taxonomy {self.name!r} points to {target!r}, which is not "
                    f"a label; use one of {self.labels} or add {target!r} to labels"
                )
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

    def normalize_multi(self, value: str | None) -> list[str] | None:
        """Canonical labels of a ``"a|b"`` value, sorted; ``None`` when missing or any part unknown.

        A single-label taxonomy returns a one-element list for a known value.
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
        """Canonical label for a raw value, or ``None`` when it is empty or unknown.

        Multilabel taxonomies accept ``"floral|Stripes"`` and return the sorted canonical labels
        joined by ``|`` (``"floral|striped"``); use :meth:`normalize_multi` for a list. Use
        :meth:`resolve` to tell an empty cell from an unknown value.
        """
        labels = self.normalize_multi(value)
        return MULTILABEL_SEPARATOR.join(labels) if labels else None

    def resolve(self, value: object) -> Resolution:
        """Resolve a raw cell: ``Resolution(label, missing)``.

        ``missing`` is True for ``None``, NaN and blank strings; a non-empty value that matches
        nothing gives ``Resolution(None, False)`` (``.unknown`` is True).
        """
        if _is_missing(value):
            return Resolution(None, True)
        return Resolution(self.normalize(str(value)), False)


# ---------------------------------------------------------------------------------------------
# loading and saving


def _read_mapping(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError(
            f"{path}: taxonomy files must end in .json or .toml; rename the file or convert it"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: taxonomy file not found; check the path")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read taxonomy file ({exc}); fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object/table at the top level of the file")
    return data


def _validate(data: dict[str, Any], source: str) -> Taxonomy:
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as exc:
        problems = explain_validation_error(exc, "(taxonomy)")
        raise ConfigError(
            f"{source}: invalid taxonomy: {problems}. Accepted keys: "
            f"{', '.join(Taxonomy.model_fields)}."
        ) from None


@lru_cache(maxsize=1)
def _builtin_cache() -> dict[str, Taxonomy]:
    found: dict[str, Taxonomy] = {}
    for path in sorted(_TAXONOMY_DIR.glob("*.json")):
        taxonomy = _validate(_read_mapping(path), str(path))
        found[taxonomy.name] = taxonomy
    return found


def builtin_taxonomies() -> dict[str, Taxonomy]:
    """The taxonomies shipped with the SDK, by name (fresh copies: edit them freely)."""
    return {name: tax.model_copy(deep=True) for name, tax in _builtin_cache().items()}


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A built-in taxonomy by name (``"color"``) or one taxonomy from a ``.json``/``.toml`` file.

    The file holds the :class:`Taxonomy` fields at its top level; ``name`` defaults to the file
    stem. For a project file with several attributes use :func:`load_project_taxonomies`.
    """
    builtins = _builtin_cache()
    if isinstance(name_or_path, str) and name_or_path in builtins:
        return builtins[name_or_path].model_copy(deep=True)
    path = Path(name_or_path)
    if path.suffix.lower() not in (".json", ".toml") and not path.exists():
        raise ConfigError(
            f"unknown taxonomy {str(name_or_path)!r}: built-in taxonomies are "
            f"{', '.join(sorted(builtins))}; or pass the path of a .json/.toml taxonomy file"
        )
    data = _read_mapping(path)
    if "attributes" in data:
        raise ConfigError(
            f"{path}: this is a project file with several attributes; load it with "
            "load_project_taxonomies() and pick one by name"
        )
    data.setdefault("name", path.stem)
    return _validate(data, str(path))


def load_project_taxonomies(path: str | Path) -> dict[str, Taxonomy]:
    """Every taxonomy in a team's project file (JSON or TOML), by attribute name.

    The file has an ``attributes`` table whose keys are attribute names and whose values hold
    ``labels``, ``synonyms``, ``multilabel`` and ``description``. A directory means
    ``<directory>/fashion-attributes.json``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / PROJECT_FILE
    data = _read_mapping(path)
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise ConfigError(
            f"{path}: a project file needs an 'attributes' table, e.g. "
            '{"attributes": {"fit": {"labels": ["slim", "regular"]}}}; add one or save a '
            "taxonomy into it with save_project_taxonomy()"
        )
    found: dict[str, Taxonomy] = {}
    for name, body in attributes.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: attributes.{name} must be a table/object with 'labels'")
        if body.get("name", name) != name:
            raise ConfigError(
                f"{path}: attributes.{name} says name={body['name']!r}; drop 'name' or make it match"
            )
        found[name] = _validate({**body, "name": name}, f"{path} (attributes.{name})")
    return found


def save_project_taxonomy(path: str | Path, taxonomy: Taxonomy) -> Path:
    """Add or replace ``taxonomy`` in a project file, creating the file if needed.

    JSON (``fashion-attributes.json``, the default when ``path`` is a directory) or TOML by
    suffix; other top-level keys are kept (comments in a TOML file are not). Returns the path.
    """
    path = Path(path)
    if path.is_dir():
        path = path / PROJECT_FILE
    data: dict[str, Any] = _read_mapping(path) if path.exists() else {}
    if path.suffix.lower() not in (".json", ".toml"):
        raise ConfigError(f"{path}: project files must end in .json or .toml; rename it")
    attributes = data.setdefault("attributes", {})
    if not isinstance(attributes, dict):
        raise ConfigError(f"{path}: 'attributes' must be a table/object; fix or remove it")
    attributes[taxonomy.name] = taxonomy.model_dump(exclude={"name"})
    if path.suffix.lower() == ".toml":
        import tomli_w

        try:
            text = tomli_w.dumps(data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot write TOML ({exc}); save the project file as JSON") from None
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


__all__ = [
    "MULTILABEL_SEPARATOR",
    "PROJECT_FILE",
    "Resolution",
    "Taxonomy",
    "builtin_taxonomies",
    "load_project_taxonomies",
    "load_taxonomy",
    "normalize_text",
    "save_project_taxonomy",
]
