"""Model URIs: ``hf://org/name@revision``, ``local://name@revision`` or a bundle folder.

A revision may be a revision id, a tag (``latest``, ``v1``) or, on the Hub, a branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fashion.errors import BundleError, ConfigError

Scheme = Literal["hf", "local", "path"]
SCHEMES = ("hf", "local")


@dataclass(frozen=True)
class ModelURI:
    """A parsed model URI. For ``path`` URIs ``name`` is the folder."""

    scheme: Scheme
    name: str
    revision: str | None = None

    def __str__(self) -> str:
        if self.scheme == "path":
            return self.name
        return f"{self.scheme}://{self.name}" + (f"@{self.revision}" if self.revision else "")


def parse_uri(value: str | Path, revision: str | None = None) -> ModelURI:
    """Parse a model URI; ``revision`` (if given) must agree with an ``@revision`` suffix."""
    if isinstance(value, Path):
        return ModelURI("path", str(value), revision)
    text = str(value).strip()
    if "://" not in text:
        return ModelURI("path", text, revision)
    scheme, rest = text.split("://", 1)
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unknown model URI scheme {scheme!r} in {text!r}; use hf://org/name[@revision], "
            "local://name[@revision] or a bundle folder."
        )
    name, _, suffix = rest.partition("@")
    name = name.strip("/")
    if not name:
        raise ConfigError(f"model URI {text!r} names no model; e.g. {scheme}://team/shoes@latest")
    if suffix and revision and suffix != revision:
        raise ConfigError(f"model URI {text!r} says revision {suffix!r} but revision={revision!r}")
    return ModelURI(scheme, name, suffix or revision)  # type: ignore[arg-type]


def get_registry(scheme: str = "local", **options: Any) -> Any:
    """The registry for ``scheme`` (``local`` or ``hf``); options go to its constructor."""
    if scheme == "local":
        from fashion.registry.local import LocalRegistry

        return LocalRegistry(**options)
    if scheme in ("hf", "hub"):
        from fashion.registry.hub import HubRegistry

        return HubRegistry(**options)
    raise ConfigError(f"unknown registry {scheme!r}; use 'local' or 'hf'.")


def fetch_uri(
    value: str | Path, *, revision: str | None = None, **options: Any
) -> tuple[Path, str | None]:
    """A local bundle folder for ``value`` (downloading it if needed) and its canonical URI.

    ``options`` (endpoint, token, cache_dir, local_files_only) configure the Hub registry; they
    are ignored for ``local://`` URIs and folders.
    """
    uri = parse_uri(value, revision)
    if uri.scheme == "path":
        folder = Path(uri.name).expanduser()
        if not folder.is_dir():
            hint = (f" For a model on the Hub use hf://{uri.name}, for the local registry "
                    f"local://{uri.name}.") if not folder.exists() and "/" not in uri.name[:1] else ""
            if (folder.parent / "checkpoints").is_dir():  # a training run's output folder
                hint = (f" {folder.parent} holds a training run that did not write its bundle (it was "
                        f"interrupted, or save_bundle = false): continue it with `fashion train CONFIG "
                        f"--resume --output {folder.parent}`.")
            raise BundleError(f"bundle folder {folder} does not exist.{hint}")
        return folder, None
    hub_options = {k: v for k, v in options.items() if v not in (None, False)}
    registry = get_registry(uri.scheme, **hub_options) if uri.scheme == "hf" else get_registry("local")
    folder = registry.fetch(uri.name, uri.revision)
    return Path(folder), str(uri)


__all__ = ["ModelURI", "SCHEMES", "fetch_uri", "get_registry", "parse_uri"]
