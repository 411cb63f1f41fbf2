"""Building a swqos TOML config in a test: tables in, a written file and a loaded config out."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomli_w

from swqos_core import config


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``; lists and scalars replace, ``None`` deletes."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class ConfigBuilder:
    """A config built table by table, written as TOML and loaded exactly as ``serve`` loads it.

    ``ConfigBuilder(tmp_path, "proxy").merge({"pipeline": {"auth": ["static"]}}).load()``.
    :meth:`merge` deep-merges (``None`` deletes a key); :meth:`write` writes ``<process>.toml``
    in the directory; :meth:`load` writes and returns the :class:`swqos_core.config.AppConfig`
    (raising :class:`~swqos_core.errors.ConfigError` as startup would).
    """

    def __init__(self, directory: Path, process: str = "proxy", data: dict[str, Any] | None = None) -> None:
        if process not in ("proxy", "enclave"):
            raise ValueError(f"process must be 'proxy' or 'enclave', not {process!r}")
        self.directory = Path(directory)
        self.process = process
        self.data: dict[str, Any] = copy.deepcopy(data or {})

    def merge(self, override: dict[str, Any]) -> ConfigBuilder:
        self.data = merge(self.data, override)
        return self

    def plugins(self, *names: str, allow_test_plugins: bool = False) -> ConfigBuilder:
        core = self.data.setdefault("swqos", {})
        core["plugins"] = [*core.get("plugins", []), *(n for n in names if n not in core.get("plugins", []))]
        if allow_test_plugins:
            core["allow_test_plugins"] = True
        return self

    def layer(self, kind: str, name: str, settings: dict[str, Any] | None = None, *, select: bool = True) -> ConfigBuilder:
        """Select ``name`` for ``kind`` in ``[pipeline]`` and set ``[layers.<kind>.<name>]``."""
        if select:
            pipeline = self.data.setdefault("pipeline", {})
            if kind in ("payload_match", "key_provider", "signer"):  # one implementation per enclave stage
                pipeline[kind] = name
            elif name not in pipeline.setdefault(kind, []):
                pipeline[kind].append(name)
        if settings is not None:
            self.data.setdefault("layers", {}).setdefault(kind, {})[name] = copy.deepcopy(settings)
        return self

    def text(self) -> str:
        return tomli_w.dumps(self.data)

    def write(self, name: str | None = None) -> Path:
        path = self.directory / (name or f"{self.process}.toml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text())
        return path

    def load(self, name: str | None = None) -> config.AppConfig:
        return config.load(self.write(name), process=self.process)
