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
from swqos_killswitch.manifest import format_time

MAX_STATE_BYTES = 256 * 1024
#: A root is a few KiB; a thousand rotations stay far below this.
MAX_CHAIN_BYTES = 16 * 1024 * 1024


class StoreError(Exception):
    """The state file exists but cannot be used."""


@dataclass(frozen=True)
class Stored:
    manifest_bytes: bytes
    signature: bytes
    version: int
    accepted_at: str
    #: Version of the trust root the manifest was accepted under (None: single pinned key).
    root_version: int | None = None


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
                root_version=obj.get("root_version"),
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise StoreError(f"{self.path} is damaged") from None
        for v in (rec.version, rec.root_version):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise StoreError(f"{self.path} is damaged")
        if rec.version is None:
            raise StoreError(f"{self.path} is damaged")
        return rec

    def save(self, manifest_bytes: bytes, signature: bytes, version: int, root_version: int | None = None) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        record: dict[str, object] = {
            "format": 1,
            "version": version,
            "accepted_at": format_time(datetime.now(UTC)),
            "manifest": base64.b64encode(manifest_bytes).decode(),
            "signature": base64.b64encode(signature).decode(),
        }
        if root_version is not None:
            record["root_version"] = root_version
        write_atomic(self.path, json.dumps(record, indent=1).encode())


class RootChainStore:
    """The roots accepted after the pinned one, in order, so a restart keeps every rotation.

    Like the manifest record, the file is untrusted on load: each root is re-verified against the
    one before it, starting from the pinned root.
    """

    def __init__(self, state_dir: Path, name: str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / f"roots-{name}.json"

    def load(self) -> list[tuple[bytes, bytes]]:
        """(root bytes, signature file) pairs; [] if none; StoreError if damaged."""
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(MAX_CHAIN_BYTES + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(raw) > MAX_CHAIN_BYTES:
            raise StoreError(f"{self.path} is too large")
        try:
            obj = json.loads(raw)
            return [(base64.b64decode(r["root"], validate=True), base64.b64decode(r["signature"], validate=True))
                    for r in obj["roots"]]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise StoreError(f"{self.path} is damaged") from None

    def save(self, links: list[tuple[bytes, bytes]]) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = {"format": 1, "roots": [{"root": base64.b64encode(d).decode(), "signature": base64.b64encode(s).decode()}
                                       for d, s in links]}
        write_atomic(self.path, json.dumps(body, indent=1).encode())
