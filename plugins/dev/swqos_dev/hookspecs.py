"""Hook specifications owned by swqos-dev, added through the kernel's ``swqos_addhooks``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from swqos_dev.contribution import DevContribution
    from swqos_dev.devstack import DevDir

hookspec = pluggy.HookspecMarker("swqos")


@hookspec
def swqos_dev_defaults(dev_dir: DevDir) -> DevContribution | None:
    """Contribute a plugin's development defaults to ``swqos dev`` (and ``swqos demo``, the test kit).

    :param dev_dir: the :class:`~swqos_dev.devstack.DevDir` being prepared. Its identity key and TLS
        files exist already: ``dev_dir.root``, ``dev_dir.identity_b58()``, ``dev_dir.audience()``,
        ``dev_dir.socket``. The directory may be a reused one: a plugin that keeps a key there reads
        it back instead of making a new one, so credentials minted earlier stay valid.
    :returns: a :class:`~swqos_dev.contribution.DevContribution` (config tables for the host-proxy
        and the enclave, files to write, one banner line, optionally a token minter), or ``None``
        to contribute nothing.

    Called once per ``swqos dev`` start on every installed plugin, plugin by plugin: an exception
    stops the stack with one line naming the plugin. Implement it with
    ``@hookimpl(optionalhook=True)`` so the plugin still loads where swqos-dev is not installed.
    """
