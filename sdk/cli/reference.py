"""Generated docs: the configuration reference (``docs/config.md``) from the pydantic schema,
and the hook examples of ``docs/plugins.md`` from the hook specs' docstrings.

Every field of :class:`~fashion.training.TrainConfig` and of the tables inside it is documented
by the docstring under it; :func:`config_reference` renders them as Markdown tables (key, type,
default, meaning) and refuses a field without one, so an undocumented key fails the docs test
(``tests/training/test_config_reference.py``). Regenerate with ``make docs`` or
``python -m fashion.cli.reference > docs/config.md``.

Each hook's example lives once, in its docstring in :mod:`fashion.contract.hookspecs`;
:func:`plugin_examples` copies them into the marked blocks of docs/plugins.md
(``python -m fashion.cli.reference --plugins docs/plugins.md``, part of ``make docs``), and the
docs test fails when the page and the docstrings differ.
"""

from __future__ import annotations

import json
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from fashion.errors import ConfigError
from fashion.training.config import DatasetConfig, OptimizerConfig, ScheduleConfig, TrainConfig

TABLES: list[tuple[str, type[BaseModel]]] = [
    ("top level", TrainConfig),
    ("[[datasets]] / [[validation]]", DatasetConfig),
    ("[optimizer]", OptimizerConfig),
    ("[schedule]", ScheduleConfig),
]

HEADER = """# Training configuration reference

Generated from the schema of `fashion.training.TrainConfig` (`make docs`); do not edit by hand.
A config file (TOML, YAML or JSON) holds these keys; relative paths are relative to the file.
An unknown key is an error that lists the accepted ones, and a config object validates on
assignment (`config.output_dir = "runs/x"` converts at once; `config.epochs = 0` raises a
`ConfigError` at once). See [training.md](training.md) for what they do together.

Manifest columns (not config keys): `id`, `images` (alias `image`: one path, `|`-separated paths
or a JSON list, relative to the manifest), `title`, `description`, `brand` and one column per
attribute. Problems are reported as `file:line`, the file's line number with the header counted.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        if issubclass(annotation, Path):
            return "path"
        if annotation is typing.Any:
            return "any"
        return {"ModelSpec": "model spec | path"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "`{}`" if isinstance(value, dict) else "`[]`" if isinstance(value, list) else "(table)"
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value)}`"


def undocumented(model: type[BaseModel]) -> list[str]:
    """Fields of ``model`` without a description."""
    return [name for name, field in model.model_fields.items() if not (field.description or "").strip()]


def config_reference(tables: list[tuple[str, type[BaseModel]]] | None = None) -> str:
    """``docs/config.md``: one table per config table; refuses an undocumented field."""
    tables = TABLES if tables is None else tables
    missing = [f"{model.__name__}.{name}" for _, model in tables for name in undocumented(model)]
    if missing:
        raise ConfigError(
            f"config keys without documentation: {', '.join(missing)}; add a docstring under each "
            "field, then run `make docs`."
        )
    out = [HEADER]
    for title, model in tables:
        out.append(f"## {title}\n")
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out.append(f"{doc}\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        for name, field in model.model_fields.items():
            description = (field.description or "").replace("\n", " ").replace("|", "\\|")
            kind = _type_name(field.annotation).replace("|", "\\|")
            out.append(f"| `{name}` | {kind} | {_default(field)} | {description} |")
        out.append("")
    return "\n".join(out)


_EXAMPLE = re.compile(
    r"(<!-- example: (?P<hook>register_\w+) [^\n]*-->\n```python\n)(?P<code>.*?)(```\n<!-- /example -->)",
    re.S,
)


def hook_example(hook: str) -> str:
    """The example of a hook spec's docstring (the block after ``Example::``), dedented."""
    from fashion.contract import hookspecs

    doc = getattr(hookspecs, hook).__doc__ or ""
    if "Example::" not in doc:
        raise ConfigError(f"the docstring of hook {hook} has no 'Example::' block")
    return textwrap.dedent(doc.split("Example::", 1)[1]).strip("\n") + "\n"


def plugin_examples(page: str) -> str:
    """``page`` (docs/plugins.md) with every marked example block replaced by its hook's."""
    return _EXAMPLE.sub(lambda m: m.group(1) + hook_example(m.group("hook")) + m.group(4), page)


if __name__ == "__main__":  # pragma: no cover - `make docs`
    import sys

    if sys.argv[1:2] == ["--plugins"]:
        page = Path(sys.argv[2])
        page.write_text(plugin_examples(page.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(config_reference(), end="")


__all__ = ["TABLES", "config_reference", "hook_example", "plugin_examples", "undocumented"]
