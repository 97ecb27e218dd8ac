"""The model spec: which croppers, backbones, fusion and attribute heads make a model.

Everything a bundle needs to rebuild a model is this spec (registered names + options) plus the
tensors. Specs are pydantic models with ``extra="forbid"`` and load from JSON, TOML or YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from fashion._util.config import StrictModel, explain_validation_error
from fashion.errors import ConfigError
from fashion.model.taxonomy import AttributeSpec, ComponentSpec

_ATTRIBUTE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, order=True)
class InputName:
    """One fusion input: ``backbone`` (its key in the spec) and the image ``view`` it reads.

    A text backbone has no view. ``str()`` is the form bundles, fusions and the feature cache use
    as a key (``"image:front"``, ``"text"``); :meth:`parse` reads it back.
    """

    backbone: str
    view: str | None = None

    def __post_init__(self) -> None:
        for part in (self.backbone, self.view):
            if part is not None and (not part or ":" in part):
                raise ConfigError(f"input name parts may not be empty or contain ':', got {part!r}")

    def __str__(self) -> str:
        return self.backbone if self.view is None else f"{self.backbone}:{self.view}"

    @classmethod
    def parse(cls, text: str) -> InputName:
        """``"key:view"`` or ``"key"`` (as written by :meth:`__str__`)."""
        backbone, sep, view = text.partition(":")
        return cls(backbone, view if sep else None)

    @property
    def is_image(self) -> bool:
        return self.view is not None



class BackboneSpec(ComponentSpec):
    """A backbone; image backbones list the views they encode (their weights are shared)."""

    views: list[str] = Field(default_factory=list)


class ModelSpec(StrictModel):
    """Views (croppers) -> backbones -> fusion -> one head per attribute."""

    views: dict[str, ComponentSpec] = Field(
        default_factory=lambda: {"full": ComponentSpec(name="full")}
    )
    backbones: dict[str, BackboneSpec]
    fusion: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="concat"))
    attributes: dict[str, AttributeSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if not self.backbones:
            raise ValueError("a model needs at least one backbone")
        used: set[str] = set()
        for key, backbone in self.backbones.items():
            if ":" in key or "/" in key:
                raise ValueError(f"backbone key {key!r} may not contain ':' or '/'")
            missing = [v for v in backbone.views if v not in self.views]
            if missing:
                raise ValueError(
                    f"backbone {key!r} reads views {missing} that are not defined in `views` "
                    f"(defined: {sorted(self.views)})"
                )
            used.update(backbone.views)
        unused = sorted(set(self.views) - used)
        if unused:
            raise ValueError(f"views {unused} are defined but no backbone reads them")
        for name, attribute in self.attributes.items():
            if not _ATTRIBUTE.match(name):
                raise ValueError(
                    f"attribute name {name!r} must be lowercase letters, digits and '_' "
                    "(e.g. sleeve_length)"
                )
            for other, allowed in attribute.applies_to.items():
                gate = self.attributes.get(other)
                if gate is None or other == name:
                    raise ValueError(
                        f"attribute {name!r} applies_to {other!r}, which is not another attribute "
                        f"of this model (attributes: {sorted(self.attributes)}); add it or drop "
                        "the key"
                    )
                if gate.applies_to:
                    raise ValueError(
                        f"attribute {name!r} applies_to {other!r}, which itself has applies_to; "
                        "scope an attribute by an attribute that always applies"
                    )
                unknown = sorted(set(allowed) - set(gate.labels))
                if unknown:
                    raise ValueError(
                        f"attribute {name!r}: applies_to.{other} lists {unknown}, which are not "
                        f"labels of {other!r} ({gate.labels})"
                    )
        return self

    def input_names(self) -> list[str]:
        """Fusion inputs: ``backbone:view`` for image backbones, the key for text backbones."""

        names = []
        for key, backbone in self.backbones.items():
            if backbone.views:
                names.extend(str(InputName(key, view)) for view in backbone.views)
            else:
                names.append(str(InputName(key)))
        return names

    @classmethod
    def parse(cls, data: Any, source: str = "model spec") -> ModelSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid {source}: {explain_validation_error(exc, model=cls)}") from None

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        return cls.parse(load_config_file(path), source=f"model spec {path}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON, TOML or YAML mapping, with an error naming the file on any problem."""
    import json
    import tomllib

    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the path.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path}: use a .toml, .yaml, .yml or .json file.")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:]}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level.")
    return data


__all__ = ["AttributeSpec", "BackboneSpec", "ComponentSpec", "ModelSpec", "load_config_file"]
