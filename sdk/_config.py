"""The strict pydantic base of every config model, and the one way to explain a validation error.

- :class:`StrictModel`: ``extra="forbid"`` (an unknown key is an error, never silently dropped).
- :func:`explain_validation_error`: ``"field.path: message; other.field: message"``, the text
  every ``ConfigError`` / ``BundleError`` built from a pydantic ``ValidationError`` carries.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")


def explain_validation_error(exc: ValidationError, top: str = "(top level)") -> str:
    """Every problem of ``exc`` as ``loc: message``, joined by ``; `` (``top`` names an empty loc)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or top}: "
        f"{str(err['msg']).removeprefix('Value error, ')}"
        for err in exc.errors()
    )


__all__ = ["StrictModel", "explain_validation_error"]
