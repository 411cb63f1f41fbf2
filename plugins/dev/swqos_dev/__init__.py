"""The swqos development stack (``swqos dev``, ``swqos serve --dev``) and ``swqos demo``.

Throwaway keys, a self-signed CA and loose quotas on loopback: never for production. The plugins the
stack runs describe their own development settings through the ``swqos_dev_defaults`` hook
(:mod:`swqos_dev.hookspecs`); this package names none of them.
"""
