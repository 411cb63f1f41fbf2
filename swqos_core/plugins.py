"""Plugin discovery, registration and the building of layers from a config.

Only the plugins a config names are imported (entry point group ``swqos.plugins``). Every
problem found on the way (a missing or duplicated plugin, a misspelled hook, an unknown
implementation name, an unknown config key, a test double selected without permission) is
collected and reported together as one :class:`~swqos_core.errors.ConfigError`.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pluggy

from swqos_core import hookspecs, schema
from swqos_core.config import AppConfig, ProxySettings
from swqos_core.errors import ConfigError
from swqos_core.extensions import AdminOperation, DecisionObserver, EnclaveView, MetricsCollector, StatusReporter
from swqos_core.layers import LAYER_KINDS, BuildContext

ENTRY_POINT_GROUP = "swqos.plugins"
log = logging.getLogger("swqos.plugins")

#: Registration hook name → layer kind it registers.
HOOK_KINDS: dict[str, str] = {
    "swqos_register_client_ip_resolvers": "client_ip",
    "swqos_register_authenticators": "auth",
    "swqos_register_rate_limiters": "rate_limit",
    "swqos_register_request_validators": "validate",
    "swqos_register_revocation_sources": "revocation",
    "swqos_register_services": "service",
    "swqos_register_state_stores": "store",
    "swqos_register_payload_matchers": "payload_match",
    "swqos_register_key_providers": "key_provider",
    "swqos_register_signers": "signer",
}
assert set(HOOK_KINDS.values()) == set(LAYER_KINDS)

#: Hooks called once per host-proxy with the built app (:func:`collect_contributions`).
CONTRIBUTION_HOOKS = (
    "swqos_register_observers",
    "swqos_register_metrics",
    "swqos_register_admin_operations",
    "swqos_register_status",
)

#: Built-in implementations, registered like any plugin (datasette's DEFAULT_PLUGINS).
BUILTIN_PLUGINS = ("swqos_core.builtin.plugin",)

#: First-party plugins by entry-point name → the distribution to install for it, so a config that
#: names a plugin that is not installed gets told what to ``pip install``.
FIRST_PARTY_DISTRIBUTIONS: dict[str, str] = {
    "auth_jwt": "swqos-auth-jwt",
    "ratelimit": "swqos-ratelimit",
    "payload_tls_cv": "swqos-payload-tls-cv",
    "kms_nitro": "swqos-kms-nitro",
    "cdn": "swqos-cdn",
    "cdn_cloudflare": "swqos-cdn-cloudflare",
    "cdn_cloudfront": "swqos-cdn-cloudfront",
    "killswitch": "swqos-killswitch",
    "ops": "swqos-ops",
    "state": "swqos-state",
    "dev": "swqos-dev",
    "testing": "swqos-testing",
}


class Register(Protocol):
    def __call__(
        self,
        name: str,
        factory: Callable[[Any, BuildContext], Any],
        config: type | None = None,
        *,
        insecure: bool = False,
        description: str = "",
    ) -> None: ...


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    factory: Callable[[Any, BuildContext], Any]
    config: type | None
    insecure: bool
    description: str
    plugin: str  # plugin name (entry-point name, or "builtin")
    distribution: str
    version: str


@dataclass
class Registry:
    entries: dict[str, dict[str, Registration]] = field(default_factory=lambda: {k: {} for k in LAYER_KINDS})
    problems: list[str] = field(default_factory=list)

    def add(self, reg: Registration) -> None:
        existing = self.entries[reg.kind].get(reg.name)
        if existing is not None:
            self.problems.append(
                f"{reg.kind} implementation {reg.name!r} is registered twice: by "
                f"{existing.distribution} {existing.version} and by {reg.distribution} {reg.version}"
            )
            return
        self.entries[reg.kind][reg.name] = reg

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])


@dataclass
class LoadedPlugin:
    name: str
    distribution: str
    version: str
    module: Any


def installed_entry_points() -> dict[str, list[importlib.metadata.EntryPoint]]:
    """Entry points of the group, by name, without importing anything."""
    found: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "unknown")
    return (dist.metadata["Name"] or "unknown", dist.version or "unknown")


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("swqos")
    pm.add_hookspecs(hookspecs)
    # Historic: every plugin registered from now on may add the hook specs its feature owns.
    pm.hook.swqos_addhooks.call_historic(kwargs={"pluginmanager": pm})
    return pm


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


def each_plugin(pm: pluggy.PluginManager, hook_name: str) -> Iterator[tuple[str, pluggy.HookCaller]]:
    """Yield ``(plugin name, caller)`` for every plugin that implements ``hook_name``.

    Each caller is a pluggy subset of the hook holding that plugin's implementation and every
    wrapper, so calls still go through pluggy (wrappers and ``add_hookcall_monitoring`` see
    them) while the kernel knows which plugin each registration came from.
    """
    caller: pluggy.HookCaller = getattr(pm.hook, hook_name)
    impls = caller.get_hookimpls()
    wrappers = {id(i.plugin) for i in impls if _is_wrapper(i)}
    for impl in impls:
        if _is_wrapper(impl):
            continue
        others = [p for p in pm.get_plugins() if p is not impl.plugin and id(p) not in wrappers]
        yield impl.plugin_name, pm.subset_hook_caller(hook_name, others)


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any, BaseException | None]]:
    """Call a hook plugin by plugin, so one plugin's exception does not skip the others.

    Returns ``(plugin name, result, exception)`` for each; the caller decides what a failure means.
    """
    results: list[tuple[str, Any, BaseException | None]] = []
    for name, caller in each_plugin(pm, hook_name):
        try:
            out = caller(**kwargs)
        except Exception as exc:
            results.append((name, None, exc))
            continue
        results.append((name, out[0] if out else None, None))
    return results


def load_plugins(
    names: Iterable[str] | None,
    *,
    extra_plugins: Iterable[Any] = (),
    blocked: Iterable[str] = (),
) -> tuple[pluggy.PluginManager, list[LoadedPlugin], list[str]]:
    """Create a plugin manager holding the built-ins, the named plugins and ``extra_plugins``.

    ``names=None`` loads every installed plugin (used by ``swqos plugins`` and to build the
    command line, never by a serving process). Returns ``(pm, loaded, problems)``.
    """
    pm = new_plugin_manager()
    problems: list[str] = []
    loaded: list[LoadedPlugin] = []
    from swqos_core import __version__

    for modname in BUILTIN_PLUGINS:
        module = importlib.import_module(modname)
        pm.register(module, name="builtin")
        loaded.append(LoadedPlugin("builtin", "swqos-core", __version__, module))
    for name in blocked:
        pm.set_blocked(name)

    available = installed_entry_points()
    wanted = sorted(available) if names is None else list(names)
    seen: set[str] = set()
    for name in wanted:
        if name in seen:
            problems.append(f"[swqos] plugins: {name!r} is listed twice")
            continue
        seen.add(name)
        if pm.is_blocked(name):
            continue
        eps = available.get(name, [])
        if not eps:
            have = ", ".join(sorted(available)) or "none"
            dist = FIRST_PARTY_DISTRIBUTIONS.get(name)
            hint = f"; install the {dist} distribution (pip install {dist})" if dist else ""
            problems.append(f"[swqos] plugins: plugin {name!r} is not installed{hint} (installed plugins: {have})")
            continue
        if len({_dist_of(ep) for ep in eps}) > 1:
            owners = ", ".join(f"{d} {v}" for d, v in sorted({_dist_of(ep) for ep in eps}))
            problems.append(f"[swqos] plugins: plugin {name!r} is provided by several distributions: {owners}")
            continue
        ep = eps[0]
        dist, version = _dist_of(ep)
        try:
            module = ep.load()
        except Exception as exc:  # an unimportable plugin is a startup error, named precisely
            problems.append(f"plugin {name!r} ({dist} {version}) failed to import: {type(exc).__name__}: {exc}")
            continue
        if pm.get_plugin(name) is module:  # already brought in by a plugin that depends on it (the CDN kit)
            loaded[:] = [p for p in loaded if p.name != name]
        else:
            try:
                pm.register(module, name=name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                problems.append(f"plugin {name!r} ({dist} {version}): {exc}")
                continue
        loaded.append(LoadedPlugin(name, dist, version, module))
    for i, plugin in enumerate(extra_plugins):
        pname = getattr(plugin, "SWQOS_PLUGIN_NAME", None) or f"extra-{i}"
        try:
            pm.register(plugin, name=pname)
        except (pluggy.PluginValidationError, ValueError) as exc:
            problems.append(f"plugin {pname!r}: {exc}")
            continue
        loaded.append(LoadedPlugin(pname, "in-process", "-", plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        problems.append(f"{exc} (hooks swqos knows: {', '.join(sorted(_hook_names()))})")
    return pm, loaded, problems


def _hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("swqos_")]


async def shutdown_plugins(app: App) -> None:
    """Every plugin's ``swqos_shutdown``, each in turn; a failure is logged with the plugin's name."""
    for name, result, exc in call_each(app.pm, "swqos_shutdown", app=app):
        if exc is None and inspect.isawaitable(result):
            try:
                await result
            except Exception as err:
                exc = err
        if exc is not None:
            log.error("plugin %r: swqos_shutdown failed: %s: %s", name, type(exc).__name__, exc, exc_info=exc)


def collect_registrations(pm: pluggy.PluginManager, loaded: list[LoadedPlugin]) -> Registry:
    """Call every registration hook once per plugin; the core owns collisions and error messages."""
    registry = Registry()
    by_name = {p.name: p for p in loaded}
    for hook_name, kind in HOOK_KINDS.items():
        for plugin_name, caller in each_plugin(pm, hook_name):
            owner = by_name.get(plugin_name) or LoadedPlugin(plugin_name, "unknown", "unknown", None)

            def register(
                name: str,
                factory: Callable[[Any, BuildContext], Any],
                config: type | None = None,
                *,
                insecure: bool = False,
                description: str = "",
                _kind: str = kind,
                _owner: LoadedPlugin = owner,
            ) -> None:
                registry.add(
                    Registration(_kind, name, factory, config, insecure, description,
                                 _owner.name, _owner.distribution, _owner.version)
                )

            try:
                caller(register=register)
            except Exception as exc:  # a broken plugin must not take the others' errors away
                registry.problems.append(f"plugin {owner.name!r}: {hook_name} failed: {type(exc).__name__}: {exc}")
    return registry


@dataclass
class Selection:
    """A layer chosen by the config, with its validated settings, ready to build."""

    registration: Registration
    settings: Any


def select(cfg: AppConfig, registry: Registry) -> dict[str, list[Selection]]:
    """Resolve ``[pipeline]`` names and validate ``[layers.*]`` sections; raise on any problem."""
    problems = list(registry.problems)
    chosen: dict[str, list[Selection]] = {}
    selected = cfg.selected()
    for kind, names in selected.items():
        chosen[kind] = []
        if len(set(names)) != len(names):
            problems.append(f"[pipeline] {kind}: an implementation is listed twice: {names}")
        for name in names:
            reg = registry.entries[kind].get(name)
            if reg is None:
                have = ", ".join(registry.names(kind)) or "none (is the plugin listed in [swqos] plugins?)"
                problems.append(f"[pipeline] {kind}: unknown implementation {name!r} (available: {have})")
                continue
            if reg.insecure and not cfg.core.allow_test_plugins:
                problems.append(
                    f"[pipeline] {kind}: {name!r} is a test implementation; it can only be selected "
                    "with [swqos] allow_test_plugins = true"
                )
            raw = cfg.layers.get(kind, {}).get(name, {})
            where = f"[layers.{kind}.{name}]"
            if reg.config is None:
                if raw:
                    problems.append(f"{where}: {name!r} takes no settings")
                settings = None
            else:
                settings = schema.build(reg.config, raw, where=where, base_dir=cfg.base_dir, problems=problems)
            chosen[kind].append(Selection(reg, settings))
    for kind, tables in cfg.layers.items():
        if kind not in LAYER_KINDS:
            problems.append(f"[layers.{kind}]: unknown layer kind (kinds: {', '.join(LAYER_KINDS)})")
            continue
        for name, raw in tables.items():
            if name in selected.get(kind, []):
                continue
            reg = registry.entries[kind].get(name)
            if reg is None:
                have = ", ".join(registry.names(kind)) or "none"
                problems.append(f"[layers.{kind}.{name}]: no loaded plugin registers {kind} {name!r} (available: {have})")
            elif reg.config is None:
                if raw:
                    problems.append(f"[layers.{kind}.{name}]: {name!r} takes no settings")
            else:
                # Kept ready but not selected (a standby CDN, say): still checked, so a failover
                # is one [pipeline] line and never a surprise at the worst moment.
                schema.build(reg.config, raw, where=f"[layers.{kind}.{name}]", base_dir=cfg.base_dir, problems=problems)
    if problems:
        raise ConfigError(problems)
    return chosen


def build_layers(
    chosen: dict[str, list[Selection]], ctx_for: Callable[[str, str], BuildContext]
) -> dict[str, list[tuple[str, Any]]]:
    """Call each selected factory; a factory's ConfigError joins the others in one report."""
    problems: list[str] = []
    built: dict[str, list[tuple[str, Any]]] = {}
    for kind, selections in chosen.items():
        proto = LAYER_KINDS[kind][0]
        built[kind] = []
        for sel in selections:
            name = sel.registration.name
            try:
                obj = sel.registration.factory(sel.settings, ctx_for(kind, name))
            except ConfigError as exc:
                problems += [f"[layers.{kind}.{name}]: {p}" for p in exc.problems]
                continue
            except Exception as exc:
                problems.append(f"[layers.{kind}.{name}]: failed to start: {type(exc).__name__}: {exc}")
                continue
            if not isinstance(obj, proto):
                problems.append(f"[layers.{kind}.{name}]: factory returned {type(obj).__name__}, not a {proto.__name__}")
                continue
            built[kind].append((name, obj))
    if problems:
        raise ConfigError(problems)
    return built


@dataclass
class Contributions:
    """What plugins registered through the contribution hooks, each with its owner's plugin name."""

    observers: list[tuple[str, str, DecisionObserver]] = field(default_factory=list)  # (owner, name, fn)
    metrics: list[tuple[str, MetricsCollector]] = field(default_factory=list)  # (owner, collector)
    admin_operations: dict[str, tuple[str, AdminOperation]] = field(default_factory=dict)
    status: dict[str, tuple[str, StatusReporter]] = field(default_factory=dict)


@dataclass
class App:
    """A configured process: its plugin manager, registrations, built layers and contributions."""

    process: str
    config: AppConfig
    pm: pluggy.PluginManager
    plugins: list[LoadedPlugin]
    registry: Registry
    layers: dict[str, list[tuple[str, Any]]]
    state: Any = None  # ServiceState in the host-proxy
    #: The host-proxy's enclave connection, read-only to plugins; None in the enclave and the CLI.
    enclave: EnclaveView | None = None
    contributions: Contributions = field(default_factory=Contributions)

    def one(self, kind: str) -> Any:
        return self.layers[kind][0][1]

    def all(self, kind: str) -> tuple[Any, ...]:
        return tuple(obj for _, obj in self.layers.get(kind, []))

    def owner(self, plugin_name: str) -> str:
        """``plugin 'x' (dist version)`` for messages naming a plugin."""
        p = next((p for p in self.plugins if p.name == plugin_name), None)
        return f"plugin {plugin_name!r}" + (f" ({p.distribution} {p.version})" if p else "")


def collect_contributions(app: App) -> Contributions:
    """Call the contribution hooks plugin by plugin; raise one ConfigError naming every problem.

    A name registered twice names both owners; a hook that raises names its plugin and the hook;
    a contribution that does not satisfy its Protocol is refused.
    """
    c = Contributions()
    problems: list[str] = []
    families: dict[str, str] = {}
    observer_names: dict[str, str] = {}

    def clash(what: str, name: str, first: str, second: str) -> None:
        problems.append(f"{what} {name!r} is registered twice: by {app.owner(first)} and by {app.owner(second)}")

    def run(hook_name: str, make: Callable[[str], Callable[..., None]]) -> None:
        for plugin_name, caller in each_plugin(app.pm, hook_name):
            try:
                caller(app=app, register=make(plugin_name))
            except Exception as exc:  # named and reported; nothing starts
                problems.append(f"{app.owner(plugin_name)}: {hook_name} failed: {type(exc).__name__}: {exc}")

    def observers(owner: str) -> Callable[..., None]:
        def register(name: str, observer: DecisionObserver) -> None:
            if not callable(observer):
                problems.append(f"{app.owner(owner)}: observer {name!r} is not callable")
            elif name in observer_names:
                clash("observer", name, observer_names[name], owner)
            else:
                observer_names[name] = owner
                c.observers.append((owner, name, observer))
        return register

    def metrics(owner: str) -> Callable[..., None]:
        def register(collector: MetricsCollector) -> None:
            if not isinstance(collector, MetricsCollector):
                problems.append(f"{app.owner(owner)}: {type(collector).__name__} is not a MetricsCollector")
                return
            for family in collector.families:
                if family.name in families:
                    clash("metric", family.name, families[family.name], owner)
                families[family.name] = owner
            c.metrics.append((owner, collector))
        return register

    def operations(owner: str) -> Callable[..., None]:
        def register(operation: AdminOperation) -> None:
            if not isinstance(operation, AdminOperation):
                problems.append(f"{app.owner(owner)}: {type(operation).__name__} is not an AdminOperation")
            elif operation.name in c.admin_operations:
                clash("admin operation", operation.name, c.admin_operations[operation.name][0], owner)
            else:
                c.admin_operations[operation.name] = (owner, operation)
        return register

    def status(owner: str) -> Callable[..., None]:
        def register(name: str, report: StatusReporter) -> None:
            if name in c.status:
                clash("status section", name, c.status[name][0], owner)
            else:
                c.status[name] = (owner, report)
        return register

    for hook_name, make in zip(CONTRIBUTION_HOOKS, (observers, metrics, operations, status), strict=True):
        run(hook_name, make)
    if problems:
        raise ConfigError(problems)
    app.contributions = c
    return c


def build_all(cfg: AppConfig, chosen: dict[str, list[Selection]], *, state: Any = None,
              process: str | None = None) -> dict[str, list[tuple[str, Any]]]:
    """Build every selected layer, the store first: every other factory receives it as ``ctx.store``."""
    store: Any = None

    workers = cfg.settings.workers if isinstance(cfg.settings, ProxySettings) else 1

    def ctx_for(kind: str, name: str) -> BuildContext:
        return BuildContext(
            name=name, kind=kind, process=process or cfg.process, config_dir=cfg.base_dir,  # type: ignore[arg-type]
            logger=logging.getLogger(f"swqos.{kind}.{name}"), state=state, store=store, workers=workers,
        )

    layers = build_layers({k: v for k, v in chosen.items() if k == "store"}, ctx_for)
    if layers.get("store"):
        store = layers["store"][0][1]
    layers.update(build_layers({k: v for k, v in chosen.items() if k != "store"}, ctx_for))
    return layers


def build_app(
    cfg: AppConfig,
    *,
    state: Any = None,
    extra_plugins: Iterable[Any] = (),
    blocked: Iterable[str] = (),
) -> App:
    """Load the configured plugins, validate everything, build every layer. Raises ConfigError."""
    pm, loaded, problems = load_plugins(cfg.core.plugins, extra_plugins=extra_plugins, blocked=blocked)
    registry = collect_registrations(pm, loaded)
    registry.problems[:0] = problems
    chosen = select(cfg, registry)
    layers = build_all(cfg, chosen, state=state)
    if cfg.core.allow_test_plugins:
        log.warning("TEST PLUGINS ALLOWED: this configuration may select fakes; never use it in production")
    return App(cfg.process, cfg, pm, loaded, registry, layers, state)
