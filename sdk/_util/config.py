"""The strict pydantic base of every config model, and the one way to explain a validation error.

- :class:`StrictModel`: ``extra="forbid"`` (an unknown key is an error, never silently dropped).
- :func:`explain_validation_error`: ``"field.path: message; other.field: message"``, the text
  every ``ConfigError`` / ``BundleError`` built from a pydantic ``ValidationError`` carries.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")


def explain_validation_error(
    exc: ValidationError, top: str = "(top level)", model: type[BaseModel] | None = None
) -> str:
    """Every problem of ``exc`` as ``loc: message``, joined by ``; `` (``top`` names an empty loc).

    With ``model`` (the class that was validated), an unknown key also lists the keys accepted
    by *its* table (``optimizer.lr_hed: unknown key; accepted keys of [optimizer]: ...``).
    """
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or top
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and model is not None:
            table = ".".join(str(p) for p in err["loc"][:-1] if not isinstance(p, int))
            keys = accepted_keys(model, err["loc"][:-1])
            if keys:
                name = f"[[{table}]]" if err["loc"][:-1] and isinstance(err["loc"][-2], int) else f"[{table}]"
                message = (
                    f"unknown key; accepted keys of {name if table else 'the top level'}: "
                    f"{', '.join(keys)}"
                )
        if err["type"] == "missing":
            message = _missing(model, tuple(err["loc"]))
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def accepted_keys(model: type[BaseModel], loc: tuple[int | str, ...] | list[int | str]) -> list[str]:
    """The field names of the model table at ``loc`` inside ``model`` (through nested models,
    lists, dicts and optionals); ``[]`` when ``loc`` does not lead to a model."""
    current = _strip_union(_annotation_at(model, loc), None)
    return list(current.model_fields) if _is_model(current) else []


def _missing(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    """What to do about a missing required key, in the words of a config file."""
    where = ".".join(str(p) for p in loc if not isinstance(p, int))
    annotation = _strip_union(_annotation_at(model, loc), None) if model is not None else None
    args = get_args(annotation)
    if get_origin(annotation) is list and args and _is_model(args[0]):
        return f"missing; add a [[{where}]] table"
    if _is_model(annotation):
        return f"missing; add a [{where}] table"
    return "missing; this key is required"


def _annotation_at(model: type[BaseModel], loc: tuple[int | str, ...] | list[int | str]) -> Any:
    """The type annotation of the value at ``loc`` inside ``model`` (``None`` when unknown)."""
    current: Any = model
    for part in loc:
        current = _strip_union(current, part)
        origin, args = get_origin(current), get_args(current)
        if isinstance(part, str) and _is_model(current) and part == getattr(current, "__name__", None):
            continue  # pydantic names the union member it tried
        if isinstance(part, int) and origin in (list, tuple) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        elif _is_model(current) and isinstance(part, str) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    return current


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _strip_union(annotation: Any, part: int | str | None) -> Any:
    """One member of a union: the model ``part`` names, else a model, else a container."""
    if get_origin(annotation) not in (Union, UnionType):
        return annotation
    members = [a for a in get_args(annotation) if a is not type(None)]
    for member in members:
        if _is_model(member) and member.__name__ == part:
            return member
    for member in members:
        if _is_model(member):
            return member
    for member in members:
        if get_origin(member) in (list, tuple, dict):
            return member
    return members[0] if members else annotation


__all__ = ["StrictModel", "accepted_keys", "explain_validation_error"]
