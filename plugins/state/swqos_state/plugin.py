"""Hook implementations of swqos-state."""

from swqos_core import hookimpl
from swqos_state import redis_store, sqlite


@hookimpl
def swqos_register_state_stores(register):
    register("sqlite", sqlite.build, sqlite.SqliteSettings,
             description="one SQLite file (WAL) in a state directory: survives restarts, one host")
    register("redis", redis_store.build, redis_store.RedisSettings,
             description="Redis (or Valkey) shared by a fleet of host-proxies; Lua scripts on the server's clock")


@hookimpl
def swqos_add_commands(subparsers):
    from swqos_state.cli import add_commands

    add_commands(subparsers)
