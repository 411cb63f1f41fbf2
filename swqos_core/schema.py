"""Turn a TOML table into a typed settings dataclass, collecting every problem.

A plugin describes its settings as a plain ``@dataclass``: field types say what is
accepted (``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict[str, ...]``,
``Literal[...]``, ``X | None``, :class:`Secret`, or a nested dataclass), defaults say what
is optional. Unknown keys are errors, because a misspelled setting silently falling back to
its default is how a security setting gets lost.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class Secret:
    """A secret referenced from config (``{ "$env" = "NAME" }`` or ``{ "$file" = "path" }``).

    The value is read when resolved and never appears in ``repr``, logs or errors.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: bytes, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    __str__ = __repr__


def _resolve_secret(value: Any, where: str, base_dir: Path, problems: list[str]) -> Secret | None:
    if not (isinstance(value, dict) and len(value) == 1):
        problems.append(f"{where}: a secret must be a reference, {{ \"$env\" = \"NAME\" }} or {{ \"$file\" = \"path\" }}")
        return None
    (kind, ref), = value.items()
    if kind == "$env" and isinstance(ref, str):
        if ref not in os.environ:
            problems.append(f"{where}: environment variable {ref} is not set")
            return None
        return Secret(os.environ[ref].encode(), f"$env:{ref}")
    if kind == "$file" and isinstance(ref, str):
        path = Path(ref).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            return Secret(path.read_bytes().strip(), f"$file:{path}")
        except OSError as exc:
            problems.append(f"{where}: cannot read secret file {path}: {exc.strerror}")
            return None
    problems.append(f"{where}: unknown secret reference {kind!r} (use \"$env\" or \"$file\")")
    return None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str, base_dir: Path, problems: list[str]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if tp is Secret:
        return _resolve_secret(value, where, base_dir, problems)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], where, base_dir, problems)
        for alt in inner:  # first alternative that converts without problems
            trial: list[str] = []
            out = _convert(value, alt, where, base_dir, trial)
            if not trial:
                return out
        problems.append(f"{where}: expected {' or '.join(_type_name(a) for a in inner)}, got {type(value).__name__}")
        return None
    if origin is Literal:
        if value not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            problems.append(f"{where}: {value!r} is not one of {allowed}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {type(value).__name__}")
            return []
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{where}[{i}]", base_dir, problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a table, got {type(value).__name__}")
            return {}
        _, val_tp = get_args(tp) or (str, Any)
        return {str(k): _convert(v, val_tp, f"{where}.{k}", base_dir, problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a table, got {type(value).__name__}")
            return None
        return build(tp, value, where=where, base_dir=base_dir, problems=problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str):
            problems.append(f"{where}: expected a path string, got {value!r}")
            return value
        p = Path(value).expanduser()
        return p if p.is_absolute() else base_dir / p
    raise TypeError(f"unsupported settings type {tp!r} at {where}")  # a plugin bug, not a user error


class _AlreadyReported(Exception):
    pass


def build(cls: type[T], data: dict[str, Any], *, where: str, base_dir: Path, problems: list[str]) -> T:
    """Build ``cls`` from ``data``; append every problem (prefixed by ``where``) to ``problems``.

    Returns an instance even when there were problems (with defaults where values were bad),
    so that checking can go on and report everything at once.
    """
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            problems.append(f"{where}: unknown key {key!r} (known keys: {known})")
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}", base_dir, problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{where}: missing required key {name!r}")
            kwargs[name] = None
    try:
        if len(problems) > before:  # the values are already wrong: __post_init__ would only repeat it, or crash
            raise _AlreadyReported
        obj = cls(**kwargs)
    except (TypeError, ValueError, _AlreadyReported) as exc:  # __post_init__ validation in the settings class
        if not isinstance(exc, _AlreadyReported):
            problems.append(f"{where}: {exc}")
        obj = cls.__new__(cls)
        for name, f in fields.items():
            value = kwargs.get(name, f.default if f.default is not dataclasses.MISSING else None)
            object.__setattr__(obj, name, value)
    return obj


def describe(cls: type | None) -> list[tuple[str, str, str]]:
    """``(key, type, default)`` rows for docs and ``swqos plugins``."""
    if cls is None:
        return []
    hints = get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append((f.name, _type_name(hints[f.name]).replace("swqos_core.schema.", ""), default))
    return rows


__all__ = ["Secret", "build", "describe", "typing"]
