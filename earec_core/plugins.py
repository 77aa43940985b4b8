"""Plugin discovery: entry points of the ``earec`` group, loaded into one pluggy manager.

A plugin that fails to import, implements a hook under a misspelled name, or declares a wrong
hook argument is *reported by name and skipped*; the other plugins still load.  The environment
variable ``EAREC_LOAD_PLUGINS`` (comma separated entry-point names; empty means none) restricts
which entry points are loaded, e.g. to debug one plugin or to run tests hermetically.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import ModalityNotFound, PluginError, RecommenderNotFound
from .modality import Modality
from .recommender import Recommender

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "earec"
LOAD_ENV = "EAREC_LOAD_PLUGINS"
TRACE_ENV = "EAREC_TRACE_HOOKS"


def tracing() -> bool:
    """Whether ``EAREC_TRACE_HOOKS`` asks for hook calls to be traced to stderr."""
    return os.environ.get(TRACE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _trace(message: str) -> None:
    if tracing():
        import sys

        sys.stderr.write(f"[earec hooks] {message}\n")


@dataclass
class PluginManagerState:
    """What loading the plugins found: the manager, the broken plugins and their errors."""

    pm: pluggy.PluginManager
    broken: dict[str, str] = field(default_factory=dict)
    loaded: bool = False


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("earec")
    pm.add_hookspecs(hookspecs)
    if tracing():  # pluggy's own tracer for calls made through pm.hook.* (as datasette does)
        import sys

        pm.trace.root.setwriter(lambda text: sys.stderr.write(f"[earec hooks] {text}"))
        pm.enable_tracing()
    return pm


_state = PluginManagerState(pm=_new_manager())


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, with entry-point plugins loaded on first use."""
    load_entry_points()
    return _state.pm


def broken_plugins() -> dict[str, str]:
    """``{plugin name: error message}`` for every plugin that could not be loaded."""
    load_entry_points()
    return dict(_state.broken)


def register_plugin(plugin: Any, name: str) -> bool:
    """Register one plugin object (module, class or instance) under ``name``.

    Validates it against the hook specs at once (``check_pending``).  Returns ``False`` and
    records the reason under :func:`broken_plugins` if the plugin is invalid; never raises.
    """
    pm = _state.pm
    try:
        _trace(f"register plugin {name!r}")
        pm.register(plugin, name=name)
        pm.check_pending()
    except Exception as exc:  # a broken plugin must not take the others down
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        _state.broken[name] = f"{type(exc).__name__}: {exc}"
        log.warning("plugin %r skipped: %s", name, _state.broken[name])
        return False
    _state.broken.pop(name, None)
    return True


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered under ``name`` (tests use this to clean up)."""
    plugin = _state.pm.get_plugin(name)
    if plugin is not None:
        _state.pm.unregister(plugin)
    _state.broken.pop(name, None)


def reload_plugins() -> None:
    """Forget every registered plugin and load the entry points again (honours the env var)."""
    global _state
    _state = PluginManagerState(pm=_new_manager())
    load_entry_points()


def load_entry_points() -> None:
    """Load every ``earec`` entry point once (honouring ``EAREC_LOAD_PLUGINS``)."""
    if _state.loaded:
        return
    _state.loaded = True
    allowed = os.environ.get(LOAD_ENV)
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allow is not None and ep.name not in allow:
            continue
        if _state.pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:
            _state.broken[ep.name] = f"import failed: {type(exc).__name__}: {exc}"
            log.warning("plugin %r skipped: %s", ep.name, _state.broken[ep.name])
            continue
        register_plugin(module, ep.name)


def plugin_info() -> list[dict[str, Any]]:
    """One dict per loaded plugin: name, distribution version, hooks implemented, and what it registers."""
    pm = plugin_manager()
    dists = {ep.name: ep.dist for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    reg = registry()
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda x: str(x[0])):
        dist = dists.get(name)
        rows.append(
            {
                "name": name,
                "version": dist.version if dist is not None else None,
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
                "modalities": sorted(k for k, v in reg.modality_owner.items() if v == name),
                "recommenders": sorted(k for k, v in reg.recommender_owner.items() if v == name),
            }
        )
    return rows


@dataclass
class Registry:
    """Everything the loaded plugins registered, keyed by the user-facing name."""

    modalities: dict[str, type] = field(default_factory=dict)
    recommenders: dict[str, type] = field(default_factory=dict)
    modality_owner: dict[str, str] = field(default_factory=dict)
    recommender_owner: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def modality(self, name: str) -> type:
        """The modality class called ``name``. Raises ModalityNotFound listing the known ones."""
        try:
            return self.modalities[name]
        except KeyError:
            known = ", ".join(sorted(self.modalities)) or "none"
            raise ModalityNotFound(
                f"no modality named {name!r} (registered: {known}); is its plugin installed? see `earec plugins`"
            ) from None

    def recommender(self, name: str) -> type:
        """The recommender class called ``name``. Raises RecommenderNotFound."""
        try:
            return self.recommenders[name]
        except KeyError:
            known = ", ".join(sorted(self.recommenders)) or "none"
            raise RecommenderNotFound(
                f"no recommender named {name!r} (registered: {known}); see `earec plugins`"
            ) from None


def registry() -> Registry:
    """Call every plugin's register hooks and collect the results.

    A name registered twice keeps the first registration; the second is reported in
    ``Registry.problems`` (and logged), never silently replacing the first.
    """
    pm = plugin_manager()
    reg = Registry()

    def collector(kind: str, base: type, table: dict, owners: dict, plugin_name: str):
        def register(cls):
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(f"plugin {plugin_name!r} registered {cls!r}, which is not a {base.__name__} subclass")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin_name!r} registered {kind} {cls.__name__} without a name")
            if name in table:
                msg = f"{kind} {name!r} from plugin {plugin_name!r} ignored: already registered by {owners[name]!r}"
                reg.problems.append(msg)
                log.warning(msg)
                return
            table[name] = cls
            owners[name] = plugin_name

        return register

    for hook, kind, base, table, owners in (
        ("earec_register_modalities", "modality", Modality, reg.modalities, reg.modality_owner),
        ("earec_register_recommenders", "recommender", Recommender, reg.recommenders, reg.recommender_owner),
    ):
        # Call each implementation on its own (pluggy's own hookimpl records) so that registrations
        # are attributed to their plugin and one failing plugin does not hide the others.
        for impl in getattr(pm.hook, hook).get_hookimpls():
            _trace(f"call {hook}(register) -> plugin {impl.plugin_name!r} ({getattr(impl.function, '__module__', '?')})")
            before = len(table)
            try:
                impl.function(register=collector(kind, base, table, owners, impl.plugin_name))
                _trace(f"  {impl.plugin_name!r} registered {sorted(k for k, v in owners.items() if v == impl.plugin_name)}"
                       f" ({len(table) - before} new)")
            except Exception as exc:
                _trace(f"  {impl.plugin_name!r} raised {type(exc).__name__}: {exc}")
                msg = f"plugin {impl.plugin_name!r} failed in {hook}: {type(exc).__name__}: {exc}"
                reg.problems.append(msg)
                log.warning(msg)
    return reg


def code_fingerprint(obj: Any) -> dict[str, Any]:
    """Which code a plugin class comes from: its module, its distribution's name and version
    (if installed as one) and a sha256 over the top-level package's ``*.py`` files, so that an
    edited plugin (an editable install keeps its version) makes the stages built with it stale."""
    import hashlib
    import sys
    from pathlib import Path

    module = obj.__module__
    top = module.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    version = None
    if dists:
        try:
            version = importlib.metadata.version(dists[0])
        except importlib.metadata.PackageNotFoundError:
            pass
    mod = sys.modules.get(top)
    files: list[Path] = []
    if mod is not None and getattr(mod, "__path__", None):
        files = sorted(p for d in mod.__path__ for p in Path(d).rglob("*.py"))
    elif mod is not None and getattr(mod, "__file__", None):
        files = [Path(mod.__file__)]
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode())
        digest.update(p.read_bytes())
    return {"module": module, "distribution": dists[0] if dists else None, "version": version,
            "source_sha256": digest.hexdigest() if files else None}
