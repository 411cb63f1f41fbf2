"""Hook specifications the CDN kit owns, added to the plugin manager through ``swqos_addhooks``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from swqos_cdn.refresh import CdnProvider

hookspec = pluggy.HookspecMarker("swqos")


@hookspec
def swqos_register_cdn_providers(register: Callable[[CdnProvider], None]) -> None:
    """Register CDN providers: the CDNs that ``swqos cdn refresh|render|show`` know.

    :param register: call ``register(provider)`` once per CDN with a
        :class:`swqos_cdn.CdnProvider` (its name, title, the URL of its published ranges, the
        parser for that document and the snapshot shipped in the plugin's package). Two plugins
        registering one provider name is an error naming both plugins; registering the very same
        provider object twice is harmless.

    Example::

        from swqos_core import hookimpl
        from swqos_cdn_mycdn.ranges import PROVIDER

        @hookimpl
        def swqos_register_cdn_providers(register):
            register(PROVIDER)

    Called when a ``swqos cdn`` command runs, and once at host-proxy startup (so a clash stops
    startup too). Implementing it requires the ``swqos-cdn`` distribution, which adds this
    specification when its ``cdn`` plugin is registered; a CDN plugin's ``swqos_addhooks`` calls
    :func:`swqos_cdn.plugin.require_kit` so that happens even when a config lists only the CDN
    plugin.
    """
