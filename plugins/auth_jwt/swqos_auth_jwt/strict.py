"""Strict decoders for the parts of a compact JWS: canonical base64url and duplicate-free JSON.

Python's ``json`` keeps the last of duplicate keys and accepts ``NaN``/``Infinity``; ``base64``
accepts padding and non-zero trailing bits. Each of those lets two different byte strings mean the
same thing (or one string mean two things to two parsers), so both are refused here.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

#: The whole alphabet of an unpadded base64url segment.
B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


class StrictDecodeError(ValueError):
    """Input is not in the one canonical form accepted."""


def b64url_decode(segment: str) -> bytes:
    """Decode an unpadded base64url segment, refusing every non-canonical spelling.

    Refused: characters outside ``[A-Za-z0-9_-]`` (including ``=``), a length that leaves one
    dangling character (``len % 4 == 1``), and non-zero unused bits in the last character (which
    would make several segments decode to the same bytes, CVE-2026-102269's class).
    """
    if not B64URL_RE.fullmatch(segment):
        raise StrictDecodeError("not base64url")
    if len(segment) % 4 == 1:
        raise StrictDecodeError("impossible base64url length")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise StrictDecodeError("not base64url") from exc
    if b64url_encode(raw) != segment:  # catches non-zero trailing bits
        raise StrictDecodeError("non-canonical base64url")
    return raw


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictDecodeError("duplicate key")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise StrictDecodeError(f"{name} is not JSON")


def json_object(raw: bytes) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be one object, with no duplicate keys at any depth and no
    NaN/Infinity. Raises :class:`StrictDecodeError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictDecodeError("not UTF-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except StrictDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise StrictDecodeError("not JSON") from exc
    if not isinstance(value, dict):
        raise StrictDecodeError("not a JSON object")
    return value
