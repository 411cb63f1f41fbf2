"""The operator's admin API: status, revocation, allowlists, quotas, CDN reload, drain; and /metrics.

``swqos_core.admin.server.start_admin`` binds it next to the host-proxy (loopback, a Unix socket,
or mutual TLS: never an open public port), ``swqos_core.admin.cli`` is ``swqos admin``. This
package's ``__init__`` imports nothing, because :mod:`swqos_core.config` imports its settings.
"""
