"""Kill switch: a signed revocation manifest that halts a revoked release (threat model T12).

- :mod:`~swqos_core.killswitch.signing`: cosign-compatible ECDSA P-256 detached signatures.
- :mod:`~swqos_core.killswitch.manifest`: the manifest format and its strict parser.
- :mod:`~swqos_core.killswitch.store`: the last accepted manifest, persisted atomically.
- :mod:`~swqos_core.killswitch.engine`: what to accept and whether this release must halt.
- :mod:`~swqos_core.killswitch.fetch`: a bounded HTTPS GET (size cap, connect and total timeouts).
- :mod:`~swqos_core.killswitch.sources`: the ``https`` and ``file`` revocation sources.
- :mod:`~swqos_core.killswitch.cli`: ``swqos manifest keygen | sign | verify | show | drill``.

See ``docs/kill-switch.md``.
"""

from __future__ import annotations

#: The ServiceState halt source name used by the kill switch.
HALT_SOURCE = "kill_switch"
