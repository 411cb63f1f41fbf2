"""Hook implementations of swqos-cdn-cloudfront."""

from swqos_core import hookimpl  # noqa: F401
