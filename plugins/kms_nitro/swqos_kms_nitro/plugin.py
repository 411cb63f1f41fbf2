"""Hook implementations of swqos-kms-nitro."""

from swqos_core import hookimpl  # noqa: F401
