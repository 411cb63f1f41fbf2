"""The last accepted manifest, kept on disk so a restart neither forgets a halt nor accepts a rollback.

The file holds the manifest's exact bytes and its signature file, so it is re-verified with the
pinned key on every load: a state file edited on disk is treated like any other unsigned input.
Writes are atomic (temporary file, fsync, rename, fsync of the directory), so a crash leaves the
old or the new record, never half of one.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from swqos_core.files import write_atomic
from swqos_core.killswitch.manifest import format_time

MAX_STATE_BYTES = 256 * 1024


class StoreError(Exception):
    """The state file exists but cannot be used."""


@dataclass(frozen=True)
class Stored:
    manifest_bytes: bytes
    signature: bytes
    version: int
    accepted_at: str


class ManifestStore:
    def __init__(self, state_dir: Path, name: str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / f"revocation-{name}.json"

    def load(self) -> Stored | None:
        """Return the stored record, None if there is none; raise StoreError if it is damaged."""
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(raw) > MAX_STATE_BYTES:
            raise StoreError(f"{self.path} is too large")
        try:
            obj = json.loads(raw)
            rec = Stored(
                manifest_bytes=base64.b64decode(obj["manifest"], validate=True),
                signature=base64.b64decode(obj["signature"], validate=True),
                version=obj["version"],
                accepted_at=obj["accepted_at"],
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise StoreError(f"{self.path} is damaged") from None
        if isinstance(rec.version, bool) or not isinstance(rec.version, int):
            raise StoreError(f"{self.path} is damaged")
        return rec

    def save(self, manifest_bytes: bytes, signature: bytes, version: int) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps(
            {
                "format": 1,
                "version": version,
                "accepted_at": format_time(datetime.now(UTC)),
                "manifest": base64.b64encode(manifest_bytes).decode(),
                "signature": base64.b64encode(signature).decode(),
            },
            indent=1,
        ).encode()
        write_atomic(self.path, body)
