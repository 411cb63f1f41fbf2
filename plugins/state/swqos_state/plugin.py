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


def _our_store(app):
    from swqos_state.sync import StoreSync

    stores = app.all("store")
    return stores[0] if stores and isinstance(stores[0], StoreSync) else None


@hookimpl
def swqos_register_metrics(app, register):
    """The sqlite or redis store's reachability, sync failures, mirrored bans and policy records."""
    from swqos_state.metrics import StoreCollector

    store = _our_store(app)
    if store is not None:
        register(StoreCollector(store))


@hookimpl
def swqos_register_status(app, register):
    """``state_store`` in the operator's status view."""
    from swqos_state.metrics import status_of

    store = _our_store(app)
    if store is not None:
        register("state_store", lambda: status_of(store))
