"""A team's rules file, and every labelling function of one ``--from-text`` run.

A rules file (TOML, YAML or JSON) lists rules; each becomes one labelling function::

    # sleeve-rules.toml
    [[rule]]
    name = "muscle-tee"              # optional: shown in the statistics (default: rule-<n>)
    label = "sleeveless"
    keywords = ["muscle tee", "débardeur"]
    field = "title"                  # title (default), description, brand or any column

    [[rule]]
    label = "long"
    regex = '\\bLS-\\d+\\b'             # a regular expression instead of keywords
    field = "sku"

    [[rule]]
    kind = "my_plugin_function"      # any registered labelling function, with its options
    options = { threshold = 0.8 }

A rule is ``keywords`` or ``regex`` (with ``label`` and ``field``; ``negation = false`` and
``ignore_case = false`` are optional), or a ``kind`` with ``options``. A rule file that cannot be
parsed, an unknown key, a label the attribute does not have or a regex that does not compile is
a :class:`~fashion.errors.ConfigError` naming the file and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from fashion._util.config import StrictModel, explain_validation_error
from fashion.contract.labelling import LabellingFunction
from fashion.errors import ConfigError, UnknownComponentError


class Rule(StrictModel):
    """One rule of a rules file (module docstring)."""

    name: str | None = None
    label: str | None = None
    keywords: list[str] | None = None
    regex: str | None = None
    field: str = "title"
    negation: bool = True
    ignore_case: bool = True
    kind: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> Rule:
        given = [k for k in ("keywords", "regex", "kind") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of keywords, regex or kind")
        if self.kind is None and self.label is None:
            raise ValueError("a keywords or regex rule needs a label")
        return self

    def build(self, name: str, attribute: str, labels: Sequence[str]) -> LabellingFunction:
        from fashion.contract.manager import get_component_info

        if self.keywords is not None:
            kind, options = "keyword", {"label": self.label, "keywords": self.keywords,
                                        "field": self.field, "negation": self.negation}
        elif self.regex is not None:
            kind, options = "regex", {"label": self.label, "pattern": self.regex,
                                      "field": self.field, "ignore_case": self.ignore_case}
        else:
            kind, options = str(self.kind), dict(self.options)
        cls = get_component_info("labelling_function", kind).cls
        function = cls(options, attribute=attribute, labels=list(labels), name=name)  # type: ignore[call-arg]
        assert isinstance(function, LabellingFunction)
        return function


def load_rules(path: str | Path, attribute: str, labels: Sequence[str]) -> list[LabellingFunction]:
    """The labelling functions of the rules file at ``path`` for ``attribute``."""
    from fashion.model.spec import load_config_file

    data = load_config_file(path)
    unknown = set(data) - {"rule", "rules"}
    if unknown:
        raise ConfigError(f"rules file {path}: unknown top-level key(s) {sorted(unknown)}; list "
                          "rules as [[rule]] tables (TOML) or under `rules:` (YAML).")
    entries = data.get("rule", data.get("rules"))
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"rules file {path} holds no rules; add [[rule]] tables with label, "
                          "keywords (or regex) and field.")
    functions: list[LabellingFunction] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries, start=1):
        where = f"rules file {path}, rule {n}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: a rule is a table of label, keywords/regex and field.")
        try:
            rule = Rule.model_validate(dict(entry))
        except ValidationError as exc:
            raise ConfigError(f"{where}: {explain_validation_error(exc)}. Accepted keys: "
                              f"{', '.join(Rule.model_fields)}.") from None
        name = rule.name or f"rule-{n}"
        if name in seen:
            raise ConfigError(f"{where}: the name {name!r} is used twice; names tell rules apart.")
        seen.add(name)
        try:
            functions.append(rule.build(name, attribute, labels))
        except (ConfigError, UnknownComponentError) as exc:
            raise ConfigError(f"{where}: {str(exc).strip(chr(34) + chr(39))}") from None
    return functions


def plugin_functions(attribute: str, labels: Sequence[str]) -> list[LabellingFunction]:
    """Every registered labelling function whose ``attributes`` lists ``attribute``, built with
    its default options."""
    from fashion.contract.manager import build_component, list_components

    out: list[LabellingFunction] = []
    for info in list_components("labelling_function"):
        if attribute in getattr(info.cls, "attributes", ()):
            out.append(build_component("labelling_function", info.name, None,
                                       attribute=attribute, labels=list(labels)))
    return out


__all__ = ["Rule", "load_rules", "plugin_functions"]
