"""Hook implementations of swqos-cdn-cloudflare."""

from swqos_core import hookimpl  # noqa: F401
