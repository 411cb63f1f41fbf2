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


@dataclasses.dataclass(frozen=True)
class SettingDoc:
    """One settings key as ``swqos plugins --verbose`` and ``docs/reference.md`` show it."""

    #: Dotted key below the section: ``issuer``, ``brute_force.ban_after``, ``keys.<name>.public_key``.
    key: str
    #: TOML-facing type: ``string``, ``integer``, ``path``, ``list of string``, ``table``, ...
    type: str
    #: The default as TOML would spell it, ``required``, or ``unset`` for an optional key.
    default: str
    #: The allowed values of a ``Literal`` (TOML spelling); empty when any value of the type goes.
    allowed: tuple[str, ...] = ()
    #: The field's ``#:`` comment (or the docstring right below it), one line.
    doc: str = ""


_PLAIN_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", Any: "any"}


def _toml(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path)):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}" if value else "{}"
    if dataclasses.is_dataclass(value):
        return "(table below)"
    return repr(value)


def _nested(tp: Any) -> tuple[str, type] | None:
    """``(key suffix, dataclass)`` when ``tp`` holds settings tables: X, X | None, dict[str, X], list[X]."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _nested(inner[0]) if len(inner) == 1 else None
    if dataclasses.is_dataclass(tp):
        return "", tp  # type: ignore[return-value]
    if origin is dict and dataclasses.is_dataclass(get_args(tp)[1]):
        return ".<name>", get_args(tp)[1]
    if origin in (list, tuple) and get_args(tp) and dataclasses.is_dataclass(get_args(tp)[0]):
        return "[]", get_args(tp)[0]
    return None


def type_label(tp: Any) -> str:
    """How a settings type reads to someone writing TOML."""
    origin = get_origin(tp)
    if tp in _PLAIN_TYPES:
        return _PLAIN_TYPES[tp]
    if tp is Secret:
        return 'secret ({ "$env" = NAME } or { "$file" = PATH })'
    if origin is Literal:
        kinds = sorted({type_label(type(a)) for a in get_args(tp)})
        return " or ".join(kinds)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        label = " or ".join(type_label(a) for a in inner)
        return f"{label}, optional" if type(None) in get_args(tp) else label
    if dataclasses.is_dataclass(tp):
        return "table"
    if origin in (list, tuple):
        (item, *_) = get_args(tp) or (Any,)
        return f"list of {type_label(item)}"
    if origin is dict:
        _, value = get_args(tp) or (str, Any)
        return "table of tables" if dataclasses.is_dataclass(value) else f"table of {type_label(value)}"
    return _type_name(tp).replace("swqos_core.schema.", "")


def _allowed(tp: Any) -> tuple[str, ...]:
    origin = get_origin(tp)
    if origin is Literal:
        return tuple(_toml(a) for a in get_args(tp))
    if origin in (Union, types.UnionType, list, tuple):
        return tuple(v for a in get_args(tp) for v in _allowed(a))
    return ()


def field_docs(cls: type) -> dict[str, str]:
    """Each field's ``#:`` comment lines (or the string literal right below it), joined into one line.

    Read from the class source, base classes first; a class without source has no docs.
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        source = textwrap.dedent("".join(lines))
        src_lines = source.splitlines()
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for i, node in enumerate(body):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            comment: list[str] = []
            n = node.lineno - 2
            while n >= 0 and src_lines[n].strip().startswith("#:"):
                comment.insert(0, src_lines[n].strip()[2:].strip())
                n -= 1
            nxt = body[i + 1] if i + 1 < len(body) else None
            if not comment and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) \
                    and isinstance(nxt.value.value, str):
                comment = [" ".join(nxt.value.value.split())]
            if comment:
                docs[node.target.id] = " ".join(comment)
    return docs


def _class_doc(cls: type) -> str:
    """The first paragraph of a settings class's own docstring (not dataclass's generated signature)."""
    doc = cls.__dict__.get("__doc__") or ""
    if not doc or doc.startswith(f"{cls.__name__}("):
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def describe(cls: type | None, prefix: str = "") -> list[SettingDoc]:
    """Every key of settings class ``cls``, nested tables flattened into dotted keys, in field order."""
    if cls is None:
        return []
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    rows: list[SettingDoc] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default = _toml(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _toml(f.default_factory())
        else:
            default = "required"
        key = f"{prefix}{f.name}"
        nested = _nested(tp)
        doc = docs.get(f.name) or (_class_doc(nested[1]) if nested else "")
        rows.append(SettingDoc(key, type_label(tp), default, _allowed(tp), doc))
        if nested is not None:
            suffix, inner = nested
            rows.extend(describe(inner, f"{key}{suffix}."))
    return rows


__all__ = ["Secret", "SettingDoc", "build", "describe", "field_docs", "type_label", "typing"]
