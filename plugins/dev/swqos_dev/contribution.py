"""What a plugin contributes to a development stack: config tables, files, a banner line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DevFile:
    """A file the dev stack writes into its directory for a plugin."""

    #: File name inside the dev directory (no directories).
    name: str
    content: bytes
    #: Created 0600 (keys). A private file that already exists is never rewritten: reusing a dev
    #: directory keeps its keys, so tokens minted from it stay valid.
    private: bool = False


@dataclass(frozen=True)
class DevContribution:
    """One plugin's part of the dev stack, returned by ``swqos_dev_defaults``.

    ``proxy`` and ``enclave`` are TOML tables merged into ``config.toml`` and ``enclave.toml``:
    tables merge key by key, lists are concatenated (``[swqos] plugins``, ``[pipeline] auth``), and
    two plugins setting one scalar to different values is an error naming both.
    """

    proxy: Mapping[str, Any] = field(default_factory=dict)
    enclave: Mapping[str, Any] = field(default_factory=dict)
    #: Handle → file; the handle is how code reaches the path (``dev.issuer_key``).
    files: Mapping[str, DevFile] = field(default_factory=dict)
    #: One line for the start banner (what is loose here, how to tighten it, how to get a token).
    banner: str = ""
    #: ``mint_token(sub, ttl, claims) -> str``: a trader credential the stack's authenticator
    #: accepts (the demo, ``trader.jwt``, the test kit). At most one plugin provides it.
    mint_token: Callable[[str, int, Mapping[str, Any]], str] | None = None
