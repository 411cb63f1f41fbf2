"""Hook implementations of swqos-auth-jwt."""

from swqos_core import hookimpl  # noqa: F401
