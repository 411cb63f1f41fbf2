"""Building one layer from settings, the way startup builds it, without a running stack."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from swqos_core import plugins, schema
from swqos_core.errors import ConfigError
from swqos_core.layers import LAYER_KINDS, BuildContext


def build_layer(
    kind: str,
    name: str,
    settings: Mapping[str, Any] | None = None,
    *,
    plugins_to_load: Iterable[str] = (),
    process: str = "proxy",
    config_dir: Path = Path("."),
    state: Any = None,
    allow_test_plugins: bool = False,
) -> Any:
    """Load ``plugins_to_load`` (entry-point names; the built-ins always), validate ``settings``
    against the implementation's settings dataclass and call its factory.

    Raises :class:`~swqos_core.errors.ConfigError` with the same messages startup gives: an unknown
    name, a bad setting, a test implementation without ``allow_test_plugins``, a factory that
    fails or returns something that is not the layer's Protocol.
    """
    if kind not in LAYER_KINDS:
        raise ConfigError(f"unknown layer kind {kind!r} (kinds: {', '.join(LAYER_KINDS)})")
    pm, loaded, problems = plugins.load_plugins(list(plugins_to_load))
    registry = plugins.collect_registrations(pm, loaded)
    problems += registry.problems
    reg = registry.entries[kind].get(name)
    where = f"[layers.{kind}.{name}]"
    if reg is None:
        problems.append(f"{kind}: unknown implementation {name!r} (available: {', '.join(registry.names(kind)) or 'none'})")
    elif reg.insecure and not allow_test_plugins:
        problems.append(f"{kind}: {name!r} is a test implementation; pass allow_test_plugins=True")
    if problems:
        raise ConfigError(problems)
    assert reg is not None
    raw = dict(settings or {})
    if reg.config is None:
        if raw:
            raise ConfigError(f"{where}: {name!r} takes no settings")
        built_settings = None
    else:
        built_settings = schema.build(reg.config, raw, where=where, base_dir=config_dir, problems=problems)
        if problems:
            raise ConfigError(problems)
    ctx = BuildContext(name=name, kind=kind, process=process, config_dir=config_dir,
                       logger=logging.getLogger(f"swqos.{kind}.{name}"), state=state)
    return plugins.build_layers({kind: [plugins.Selection(reg, built_settings)]}, lambda k, n: ctx)[kind][0][1]
