"""One strict JSON reader for every signed document (manifests, roots, signature bundles)."""

from __future__ import annotations

import json
from typing import Any


class StrictJsonError(ValueError):
    """Not UTF-8, not JSON, a duplicate key or a non-standard constant; the message says which."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers disagreeing on which duplicate wins is a classic signed-JSON bypass.
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise StrictJsonError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _bad_constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Parse ``data`` refusing duplicate keys and NaN/Infinity. Raises :class:`StrictJsonError`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise StrictJsonError("not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_bad_constant)
    except StrictJsonError:
        raise
    except ValueError:
        raise StrictJsonError("not JSON") from None
