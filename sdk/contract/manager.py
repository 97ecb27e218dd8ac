"""The plugin manager: finds plugins, collects their components, builds components by name.

Built-in plugins (``DEFAULT_PLUGINS``) and third-party ones (entry-point group ``fashion``)
register through the same hooks. Loading happens once, lazily, on first use.

Environment:
- ``FASHION_LOAD_PLUGINS``: comma-separated allow-list of distributions (or entry-point names)
  whose plugins are loaded; empty string loads none. Unset: load every installed plugin.
- ``FASHION_DISABLE_PLUGIN_AUTOLOAD``: set to skip entry points entirely (built-ins still load).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from fashion.contract import hookspecs
from fashion.contract.components import Component, ComponentOptions
from fashion.contract.enforce import check_built, check_class
from fashion.contract.kinds import KINDS
from fashion.errors import DuplicateComponentError, PluginError, UnknownComponentError

DEFAULT_PLUGINS: tuple[str, ...] = (
    "fashion.plugins.resnet",
    "fashion.plugins.efficientnet",
    "fashion.plugins.bert",
    "fashion.plugins.open_clip",
    "fashion.plugins.croppers",
    "fashion.plugins.box",
    "fashion.plugins.box_training",
    "fashion.plugins.fusions",
    "fashion.heads.linear",
    "fashion.heads.mlp",
    "fashion.heads.multilabel",
    "fashion.training.samplers",
    "fashion.training.losses",
    "fashion.attributes.mining.functions",
)

ENTRY_POINT_GROUP = "fashion"
_NAME = re.compile(r"^[a-z][a-z0-9_.\-]*$")
_SDK_DISTRIBUTION = "fashion-sdk"


@dataclass(frozen=True)
class ComponentInfo:
    """One registered component and where it came from."""

    kind: str
    name: str
    cls: type[Component]
    plugin: str
    distribution: str | None
    version: str | None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "distribution": self.distribution,
            "version": self.version,
            "plugin": self.plugin,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "options_schema": self.cls.Options.model_json_schema(),
        }


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_cache: tuple[frozenset[tuple[str, object]], dict[str, dict[str, ComponentInfo]]] | None = None
_entry_point_dists: dict[str, tuple[str | None, str | None]] = {}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading plugins on first call."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("fashion")
            pm.add_hookspecs(hookspecs)
            _load_default_plugins(pm)
            _load_entry_points(pm)
            pm.check_pending()
            _pm = pm
        return _pm


def _load_default_plugins(pm: pluggy.PluginManager) -> None:
    for module_name in DEFAULT_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # a built-in that is not part of this build
            raise
        pm.register(module, name=module_name)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    if os.environ.get("FASHION_DISABLE_PLUGIN_AUTOLOAD"):
        return
    allow_env = os.environ.get("FASHION_LOAD_PLUGINS")
    allow = None if allow_env is None else {s.strip() for s in allow_env.split(",") if s.strip()}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        dist_name = dist.metadata["Name"] if dist is not None else None
        if allow is not None and entry_point.name not in allow and dist_name not in allow:
            continue
        if pm.get_plugin(entry_point.name) is not None or pm.is_blocked(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken third-party plugin must say who it is
            raise PluginError(
                f"plugin '{entry_point.name}' from distribution '{dist_name}' failed to import: "
                f"{exc}. Fix or remove it: `fashion uninstall {dist_name}`."
            ) from exc
        pm.register(plugin, name=entry_point.name)
        _entry_point_dists[entry_point.name] = (dist_name, dist.version if dist else None)


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time (tests, notebooks). Returns its name."""
    registered = get_plugin_manager().register(plugin, name=name)
    if registered is None:
        raise PluginError(f"plugin {name or plugin!r} is blocked or already registered")
    return registered


def unregister_plugin(plugin: object | None = None, name: str | None = None) -> None:
    get_plugin_manager().unregister(plugin, name=name)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution_of(plugin_name: str, plugin: object) -> tuple[str | None, str | None]:
    if plugin_name in _entry_point_dists:
        return _entry_point_dists[plugin_name]
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    top = module.split(".")[0]
    # packages_distributions() scans every installed distribution (~0.3 s): ask it once, and
    # never for built-ins.
    names = [_SDK_DISTRIBUTION] if top == "fashion" else _packages_distributions().get(top, [])
    for dist_name in names:
        try:
            return dist_name, importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def _collect(pm: pluggy.PluginManager) -> dict[str, dict[str, ComponentInfo]]:
    table: dict[str, dict[str, ComponentInfo]] = {kind: {} for kind in KINDS}
    for kind, spec in KINDS.items():
        hook_name, base = spec.hook, spec.base
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            dist, version = _distribution_of(impl.plugin_name, impl.plugin)

            def register(
                component: type[Component],
                name: str | None = None,
                *,
                _kind: str = kind,
                _base: type[Component] = base,
                _plugin: str = impl.plugin_name,
                _dist: str | None = dist,
                _version: str | None = version,
            ) -> None:
                who = f"plugin '{_plugin}' ({_dist or 'not installed as a distribution'})"
                if not (isinstance(component, type) and issubclass(component, _base)):
                    raise PluginError(
                        f"{who} registered {component!r} as a {_kind}, but it is not a subclass "
                        f"of fashion.{_base.__name__}."
                    )
                name = name or component.name
                if not name or not _NAME.match(name):
                    raise PluginError(
                        f"{who} registered a {_kind} with invalid name {name!r}: use lowercase "
                        "letters, digits, '_', '-' or '.', starting with a letter."
                    )
                check_class(component, _kind, name, who)
                options = component.Options
                if not (isinstance(options, type) and issubclass(options, ComponentOptions)):
                    raise PluginError(
                        f"{who}: {_kind} '{name}' Options must subclass fashion.ComponentOptions"
                    )
                existing = table[_kind].get(name)
                if existing is not None:
                    raise DuplicateComponentError(
                        f"{_kind} '{name}' is registered twice: by {existing.distribution} "
                        f"(plugin '{existing.plugin}') and by {_dist} (plugin '{_plugin}'). "
                        f"Uninstall one of them (`fashion uninstall <distribution>`) or set "
                        "FASHION_LOAD_PLUGINS to the ones you want."
                    )
                table[_kind][name] = ComponentInfo(_kind, name, component, _plugin, _dist, _version)

            try:
                impl.function(register=register)
            except (DuplicateComponentError, PluginError):
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin '{impl.plugin_name}' ({dist}) failed in {hook_name}: {exc}"
                ) from exc
    return table


def component_table(kind: str | None = None) -> dict[str, dict[str, ComponentInfo]]:
    """Every registered component, by kind then name (recomputed when plugins change)."""
    global _cache
    pm = get_plugin_manager()
    with _lock:
        # the (name, plugin) pairs themselves, not their id()s: the key keeps the plugins alive,
        # so a plugin registered after another was unregistered and freed cannot reuse its id
        # and be served the stale table
        key = frozenset(pm.list_name_plugin())
        if _cache is None or _cache[0] != key:
            _cache = (key, _collect(pm))
        table = _cache[1]
    if kind is not None:
        _check_kind(kind)
        return {kind: table[kind]}
    return table


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownComponentError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")


def get_component_info(kind: str, name: str) -> ComponentInfo:
    table = component_table(kind)[kind]
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise UnknownComponentError(
            f"no {kind} named '{name}' is registered (installed: {known}). Install the plugin "
            f"that provides it (`fashion install <distribution>`), then check `fashion plugins`."
        )
    return table[name]


def list_components(kind: str | None = None) -> list[ComponentInfo]:
    """Every registered component's :class:`ComponentInfo`, sorted by kind and name."""
    table = component_table(kind)
    return [table[k][n] for k in sorted(table) for n in sorted(table[k])]


def build_component(
    kind: str, name: str, options: ComponentOptions | Mapping[str, Any] | None = None, **kwargs: Any
) -> Any:
    """Build the ``kind`` component registered as ``name`` with ``options`` (validated)."""
    info = get_component_info(kind, name)
    component = info.cls(options, **kwargs)
    component.component_name = name
    if KINDS[kind].probed:
        who = f"plugin '{info.plugin}' ({info.distribution or 'not installed as a distribution'})"
        check_built(component, kind, name, who)
    return component
