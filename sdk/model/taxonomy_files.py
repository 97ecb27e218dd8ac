"""Taxonomy files: the built-in taxonomies (``taxonomies/*.json`` beside this module) and a
team's project file (``fashion-attributes.json``, or TOML with ``[attributes.NAME]`` tables)."""

from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fashion._util.config import explain_validation_error
from fashion._util.files import atomic_write_text
from fashion.errors import ConfigError
from fashion.model.taxonomy import Taxonomy

PROJECT_FILE = "fashion-attributes.json"
"""Default name of a team's project taxonomy file."""

_TAXONOMY_DIR = Path(__file__).with_name("taxonomies")


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
    attributes[taxonomy.name] = taxonomy.model_dump(exclude={"name"}, exclude_none=True)
    if path.suffix.lower() == ".toml":
        import tomli_w

        try:
            text = tomli_w.dumps(data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot write TOML ({exc}); save the project file as JSON") from None
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


__all__ = ["PROJECT_FILE", "builtin_taxonomies", "load_project_taxonomies", "load_taxonomy", "save_project_taxonomy"]
