"""The registry interface shared by the local and the Hugging Face Hub registries."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fashion.errors import ConfigError

# \Z, not $: "$" also matches before a trailing newline ("name\n" would pass).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?\Z")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}\Z")


@dataclass
class Revision:
    """One published revision of a model."""

    name: str
    id: str
    uri: str
    tags: list[str] = field(default_factory=list)
    created: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelSummary:
    """One model in a registry: its latest revision and tags."""

    name: str
    uri: str
    latest: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # tag -> revision id
    revisions: int | None = None
    updated: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Registry(Protocol):
    """Publish bundle folders as revisions of a named model and fetch them back."""

    scheme: str

    def publish(
        self, bundle_dir: str | Path, name: str, *, tag: str | None = None, message: str | None = None
    ) -> Revision: ...

    def fetch(self, name: str, revision: str | None = None) -> Path: ...

    def list_models(self) -> list[ModelSummary]: ...

    def list_revisions(self, name: str) -> list[Revision]: ...

    def show(self, name: str, revision: str | None = None) -> dict[str, Any]: ...


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or "--" in name:
        raise ConfigError(
            f"invalid model name {str(name)[:120]!r}: use 'name' or 'org/name' with letters, "
            "digits, '_', '-', '.' (no '--', at most 96 characters each), e.g. team/shoes."
        )
    return name


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise ConfigError(f"invalid tag {str(tag)[:120]!r}: use letters, digits, '_', '-', '.' "
                          "(at most 96 characters, e.g. v1).")
    return tag


LATEST = "latest"
"""The tag every publish moves (unless told otherwise)."""


def encode_name(name: str) -> str:
    """``org/name`` as one folder name (``org--name``)."""
    return name.replace("/", "--")


def decode_name(folder: str) -> str:
    return folder.replace("--", "/")


__all__ = ["LATEST", "ModelSummary", "Registry", "Revision", "check_name", "check_tag", "decode_name", "encode_name"]
