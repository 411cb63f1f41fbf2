"""Hook implementations of swqos-ratelimit."""

from swqos_core import hookimpl  # noqa: F401
