"""Hook implementations of swqos-dev."""

from swqos_core import hookimpl


@hookimpl
def swqos_addhooks(pluginmanager):
    from swqos_dev import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def swqos_add_commands(subparsers):
    from swqos_dev.cli import add_commands

    add_commands(subparsers)
