"""Hook specifications: how plugins plug into swqos.

Every hook here runs at **startup** (or when the ``swqos`` command line is built), never per
request. The registration hooks hand out factories; the pipeline then calls the objects those
factories build, in the fixed order of :mod:`swqos_core.pipeline`.

A registration hook receives one argument, ``register``, a callable::

    register(name, factory, config=None, *, insecure=False, description="")

- ``name``: the implementation name a TOML config selects (``[pipeline] auth = ["jwt"]``).
  Two plugins registering the same name for the same layer is a startup error.
- ``factory(config, ctx)``: builds the layer object. ``config`` is an instance of ``config``
  (a dataclass) filled from ``[layers.<kind>.<name>]``; ``ctx`` is a
  :class:`~swqos_core.layers.BuildContext`.
- ``config``: a dataclass describing the implementation's settings. Unknown keys, missing
  required keys and wrong types are startup errors. ``None`` means "takes no settings".
- ``insecure``: mark test doubles (fake KMS, allow-all auth). A config can only select them
  with ``[swqos] allow_test_plugins = true``.

``docs/hooks.md`` lists each hook with its exact signature; a test keeps the two in agreement.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from swqos_core.extensions import AdminOperation, DecisionObserver, MetricsCollector, StatusReporter
    from swqos_core.plugins import App, Register

hookspec = pluggy.HookspecMarker("swqos")

# --- registration hooks: host-proxy layers ------------------------------------------------


@hookspec
def swqos_register_client_ip_resolvers(register: Register) -> None:
    """Register client-address resolvers (layer 2, the CDN stage).

    :param register: call ``register(name, factory, config)`` once per resolver.

    The factory builds a :class:`~swqos_core.layers.ClientIpResolver`. Selected with
    ``[pipeline] client_ip = [...]``; resolvers run in the listed order, the first non-``None``
    answer wins, and the transport peer address is the final fallback.

    Called once at host-proxy startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_authenticators(register: Register) -> None:
    """Register authenticators (layer 4).

    :param register: call ``register(name, factory, config)`` once per authenticator.

    The factory builds an :class:`~swqos_core.layers.Authenticator`. Selected with
    ``[pipeline] auth = [...]``; they run in the listed order, the first
    :class:`~swqos_core.layers.Principal` wins, and an invalid credential stops the chain.
    A request no authenticator claims is refused with UNAUTHENTICATED.

    Called once at host-proxy startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_rate_limiters(register: Register) -> None:
    """Register rate limiters (layer 5).

    :param register: call ``register(name, factory, config)`` once per limiter.

    The factory builds a :class:`~swqos_core.layers.RateLimiter`. Selected with
    ``[pipeline] rate_limit = [...]``; every selected limiter must pass. Its
    ``check_address`` runs before authentication, its ``check_principal`` after.

    Called once at host-proxy startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_request_validators(register: Register) -> None:
    """Register request validators (layer 6).

    :param register: call ``register(name, factory, config)`` once per validator.

    The factory builds a :class:`~swqos_core.layers.RequestValidator`. Selected with
    ``[pipeline] validate = [...]``; every selected validator must pass, in the listed order.
    The body-size cap is not a validator: the server enforces it before any other work.

    Called once at host-proxy startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_revocation_sources(register: Register) -> None:
    """Register kill-switch sources.

    :param register: call ``register(name, factory, config)`` once per source.

    The factory builds a :class:`~swqos_core.layers.RevocationSource`, a background task
    that halts or resumes signing through ``ctx.state``. Selected with
    ``[pipeline] revocation = [...]``.

    Called once at host-proxy startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_services(register: Register) -> None:
    """Register services: background parts of the host-proxy with their own settings.

    :param register: call ``register(name, factory, config)`` once per service.

    The factory builds a :class:`~swqos_core.layers.Service` (the admin listener, the audit log,
    the boot-time release check). Selected with ``[pipeline] services = [...]``, settings in
    ``[layers.service.<name>]``. Services start in the listed order after the kill switch and
    before the listener binds; a ``start`` that raises stops startup. They close in reverse.

    Called once at host-proxy startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_state_stores(register: Register) -> None:
    """Register state stores: where limits, failure counters, bans and admin changes live.

    :param register: call ``register(name, factory, config)`` once per store.

    The factory builds a :class:`~swqos_core.store.StateStore`. Selected with
    ``[pipeline] store = "<name>"`` (exactly one; ``memory`` when unset), settings in
    ``[layers.store.<name>]``. The store is built before every other layer and reaches their
    factories as ``ctx.store``; it starts first and closes last.

    Called once at host-proxy startup, and by ``swqos plugins``.
    """


# --- registration hooks: enclave layers ---------------------------------------------------


@hookspec
def swqos_register_payload_matchers(register: Register) -> None:
    """Register payload matchers (layer 8), the enclave's judges of what may be signed.

    :param register: call ``register(name, factory, config)`` once per matcher.

    The factory builds a :class:`~swqos_core.layers.PayloadMatcher`. Selected with
    ``[pipeline] payload_match = "<name>"`` in the enclave's config (exactly one).

    Called once at enclave startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_key_providers(register: Register) -> None:
    """Register key providers (layer 9): where the identity key comes from at boot.

    :param register: call ``register(name, factory, config)`` once per provider.

    The factory builds a :class:`~swqos_core.layers.KeyProvider`. Selected with
    ``[pipeline] key_provider = "<name>"`` in the enclave's config (exactly one). The
    enclave refuses to start when the loaded key does not match ``[enclave]
    expected_public_key``.

    Called once at enclave startup, and by ``swqos plugins``.
    """


@hookspec
def swqos_register_signers(register: Register) -> None:
    """Register signer backends (layer 10).

    :param register: call ``register(name, factory, config)`` once per backend.

    The factory builds a :class:`~swqos_core.layers.Signer`. Selected with
    ``[pipeline] signer = "<name>"`` in the enclave's config (exactly one).

    Called once at enclave startup, and by ``swqos plugins``.
    """


# --- contributions: called once at host-proxy startup, after every layer is built --------


@hookspec
def swqos_register_observers(app: App, register: Callable[[str, DecisionObserver], None]) -> None:
    """Register decision observers: called with every :class:`~swqos_core.extensions.Decision`.

    :param app: the configured :class:`~swqos_core.plugins.App`; find your own layers in
        ``app.layers``.
    :param register: call ``register(name, observer)``; ``observer(decision)`` runs on the event
        loop for every decided call and must not block. An exception in it is logged and ignored.

    Called once at host-proxy startup, after the layers are built and before the listener binds.
    No observer registered means no Decision is ever built.
    """


@hookspec
def swqos_register_metrics(app: App, register: Callable[[MetricsCollector], None]) -> None:
    """Register metrics collectors, read when ``/metrics`` is scraped.

    :param app: the configured :class:`~swqos_core.plugins.App`.
    :param register: call ``register(collector)`` with a
        :class:`~swqos_core.extensions.MetricsCollector`. Two collectors declaring one family
        name is a startup error naming both plugins.

    Called once at host-proxy startup, after the layers are built and before the listener binds.
    """


@hookspec
def swqos_register_admin_operations(app: App, register: Callable[[AdminOperation], None]) -> None:
    """Register admin API operations, served as ``/v1/<name>`` by the admin listener.

    :param app: the configured :class:`~swqos_core.plugins.App`.
    :param register: call ``register(operation)`` with an
        :class:`~swqos_core.extensions.AdminOperation`. Two plugins registering one name is a
        startup error naming both.

    Called once at host-proxy startup, after the layers are built and before the listener binds.
    """


@hookspec
def swqos_register_status(app: App, register: Callable[[str, StatusReporter], None]) -> None:
    """Register sections of the operator's status view (``/v1/status``, the dashboard).

    :param app: the configured :class:`~swqos_core.plugins.App`.
    :param register: call ``register(name, report)``; ``report()`` returns a JSON-serializable
        mapping, read on the event loop when the status is asked for. One owner per name.

    Called once at host-proxy startup, after the layers are built and before the listener binds.
    """


@hookspec(historic=True)
def swqos_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add hook specifications that a feature package owns (``swqos_register_cdn_providers``).

    :param pluginmanager: the process's plugin manager; call ``pluginmanager.add_hookspecs(module)``.

    Called for every plugin as it is registered (a historic hook), before any other hook is
    checked, so plugins loaded in any order may implement the new hooks (pytest's
    ``pytest_addhooks``).
    """


@hookspec
def swqos_check_config(app: App, strict: bool) -> list[str] | None:
    """Report what is wrong with a configuration before it is run (``swqos config check``).

    :param app: the configured :class:`~swqos_core.plugins.App`, its layers built but never
        started: check files, keys and values, but never bind, connect or load key material
        outside the enclave.
    :param strict: True for a listener other hosts can reach (or ``--strict``): report unsafe
        setups too (a development issuer key, a resolver that does not require the CDN).
    :returns: one line per problem, each naming the file, key or value; ``None`` or ``[]`` if fine.

    Called by ``swqos config check`` on every loaded plugin, after the kernel's own checks.
    """


# --- lifecycle ----------------------------------------------------------------------------


@hookspec
def swqos_startup(app: App) -> Any:
    """Called once when a host-proxy or enclave has built its layers, before it serves.

    :param app: the running :class:`~swqos_core.plugins.App` (``app.process``, ``app.config``,
        ``app.layers``, ``app.state``).
    :returns: ``None`` or an awaitable, which is awaited. An exception aborts startup.

    Called on every loaded plugin, in pluggy's order (last registered first), after the listener
    is serving and the enclave connection has started.
    """


@hookspec
def swqos_shutdown(app: App) -> Any:
    """Called once when a host-proxy or enclave stops, after it stopped serving.

    :param app: the same :class:`~swqos_core.plugins.App` given to :func:`swqos_startup`.
    :returns: ``None`` or an awaitable, which is awaited. An exception (raised, or from the
        awaitable) is logged with the plugin's name and does not stop the others: every plugin
        gets its turn.
    """


# --- command line -------------------------------------------------------------------------


@hookspec
def swqos_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add sub-commands to the ``swqos`` command line.

    :param subparsers: the ``swqos`` parser's sub-parser collection. Call
        ``subparsers.add_parser(name, help=...)`` and ``parser.set_defaults(func=run)``, where
        ``run(args) -> int`` returns the exit code.

    Called when the command line is built for any command that is not a core command
    (``serve``, ``enclave``, ``config``, ...): those never import unconfigured plugins.
    """
