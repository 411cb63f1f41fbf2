"""Building stores the way startup does (schema-checked settings, a BuildContext)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from swqos_core import schema
from swqos_core.layers import BuildContext
from swqos_state import redis_store, sqlite


class FakeState:
    """The two ServiceState calls a store makes, recorded."""

    def __init__(self) -> None:
        self.halts: dict[str, str] = {}
        self.events: list[tuple[str, str]] = []

    def halt(self, source: str, reason: str) -> None:
        self.halts[source] = reason
        self.events.append(("halt", source))

    def lift(self, source: str) -> None:
        self.halts.pop(source, None)
        self.events.append(("lift", source))


def ctx(base: Path, state: Any = None, name: str = "sqlite") -> BuildContext:
    return BuildContext(name=name, kind="store", process="proxy", config_dir=base,
                        logger=logging.getLogger(f"test.store.{name}"), state=state)


def settings(cls: type, table: dict[str, Any], base: Path) -> Any:
    problems: list[str] = []
    s = schema.build(cls, table, where="[layers.store]", base_dir=base, problems=problems)
    assert problems == [], problems
    return s


def sqlite_store(base: Path, state: Any = None, **table: Any) -> sqlite.SqliteStateStore:
    table.setdefault("sync_interval", 0.05)
    return sqlite.build(settings(sqlite.SqliteSettings, table, base), ctx(base, state))


def redis_store_for(server: Any, base: Path, state: Any = None, **extra: Any) -> redis_store.RedisStateStore:
    return redis_store.build(settings(redis_store.RedisSettings, server.settings(**extra), base),
                             ctx(base, state, "redis"))
