"""Kill switch: a signed revocation manifest that halts a revoked release (threat model T12).

- :mod:`~swqos_killswitch.signing`: cosign-compatible ECDSA P-256 detached signatures.
- :mod:`~swqos_killswitch.manifest`: the manifest format and its strict parser.
- :mod:`~swqos_killswitch.store`: the last accepted manifest, persisted atomically.
- :mod:`~swqos_killswitch.engine`: what to accept and whether this release must halt.
- :mod:`~swqos_killswitch.sources`: the ``https`` and ``file`` revocation sources (fetching
  through the kernel's bounded :mod:`swqos_core.fetch`).
- :mod:`~swqos_killswitch.release`: release integrity (installed files against a signed list).
- :mod:`~swqos_killswitch.release_check`: the boot-time ``release_check`` service.
- :mod:`~swqos_killswitch.metrics`, :mod:`~swqos_killswitch.status`: what the plugin exports.
- :mod:`~swqos_killswitch.bundle`, :mod:`~swqos_killswitch.root`, :mod:`~swqos_killswitch.trust`: threshold
  signatures, the trust root and its chain (issue 17).
- :mod:`~swqos_killswitch.cli`, :mod:`~swqos_killswitch.root_cli`: ``swqos manifest keygen | sign | verify |
  show | drill | root init | sign | rotate | show``; :mod:`~swqos_killswitch.drill`,
  :mod:`~swqos_killswitch.threshold_drill`: the drills; :mod:`~swqos_killswitch.admin`: ``kill-switch-poll``.

See ``docs/kill-switch.md`` and this package's README.
"""

from __future__ import annotations

#: The ServiceState halt source name used by the kill switch.
HALT_SOURCE = "kill_switch"
