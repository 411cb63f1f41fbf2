"""swqos operations: the ``admin`` service (admin API, ``/metrics``, ``/healthz``), the ``audit``
service (JSON-lines audit log) and ``swqos admin``.

Selected with ``[pipeline] services = ["audit", "admin"]``; settings in
``[layers.service.admin]`` and ``[layers.service.audit]`` (README.md). Every plugin-specific metric
and admin operation comes from its own plugin through the kernel's contribution hooks.
"""
