"""The ``release_check`` service: the host-proxy refuses to start unless its installed files match
the signed release manifest (threat model TB9; what the check can and cannot catch is in
docs/kill-switch.md, "Release integrity").

Selected with ``[pipeline] services = ["release_check"]``; started after the kill switch and before
the listener binds, so a mismatch means nothing ever listens.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swqos_core.errors import ConfigError
from swqos_killswitch.release import check_release

if TYPE_CHECKING:
    from swqos_core.layers import BuildContext
    from swqos_core.plugins import App

_KEY_ID_RE = re.compile(r"\A[0-9a-fA-F]{64}\Z")


@dataclass(kw_only=True)
class ReleaseCheckSettings:
    """``[layers.service.release_check]``"""

    #: The release manifest (``swqos release manifest create``).
    manifest: Path
    #: Its signature (base64 DER, ``cosign sign-blob`` format).
    signature: Path
    #: PEM SPKI of the ECDSA P-256 release key.
    public_key: Path
    #: Hex SHA-256 of that key's DER SPKI; a different key file is a startup error.
    key_id: str

    def __post_init__(self) -> None:
        if not _KEY_ID_RE.match(self.key_id or ""):
            raise ValueError("key_id must be 64 hex digits (swqos manifest keygen prints it)")


class ReleaseCheck:
    """Runs :func:`~swqos_killswitch.release.check_release` once, at start."""

    def __init__(self, settings: ReleaseCheckSettings) -> None:
        self.settings = settings
        #: The problems the last check found (empty after a passing check), for status.
        self.problems: list[str] | None = None

    async def start(self, app: App) -> None:
        s = self.settings
        # Hashing every installed file takes a while; keep the event loop free meanwhile.
        self.problems = await asyncio.to_thread(check_release, s.manifest, s.signature, s.public_key, key_id=s.key_id)
        if self.problems:
            raise ConfigError(["release integrity check failed (refusing to serve):", *self.problems])

    async def close(self) -> None:
        return None

    def report(self) -> dict[str, object]:
        return {"checked": self.problems is not None, "passed": self.problems == [],
                "manifest": str(self.settings.manifest)}


def build_release_check(settings: ReleaseCheckSettings, ctx: BuildContext) -> ReleaseCheck:
    if ctx.process != "proxy":
        raise ConfigError("release_check runs only in the host-proxy")
    return ReleaseCheck(settings)
