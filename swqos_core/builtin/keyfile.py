"""Development key provider: the identity key from a Solana keypair file on disk.

For development and tests only in spirit (it can run anywhere), so it is not marked insecure:
an operator may run it on a plain host, knowingly giving up the enclave's guarantees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swqos_core.errors import ConfigError
from swqos_core.identity import generate_keypair_file, read_keypair_file, to_base58
from swqos_core.layers import BuildContext, KeyMaterial


@dataclass
class FileKeySettings:
    path: Path
    #: Create a new key when the file does not exist (the dev stack sets this).
    create: bool = False


class FileKeyProvider:
    def __init__(self, settings: FileKeySettings, ctx: BuildContext) -> None:
        self.path = settings.path
        self.create = settings.create
        self.log = ctx.logger

    def load(self) -> KeyMaterial:
        if not self.path.exists():
            if not self.create:
                raise ConfigError(f"identity key file {self.path} does not exist (set create = true to generate one)")
            public = generate_keypair_file(self.path)
            self.log.warning("generated a new identity key %s in %s", to_base58(public), self.path)
        return KeyMaterial(read_keypair_file(self.path), f"file:{self.path}")

    def check(self) -> list[str]:
        """What ``swqos config check`` reports: the file's presence, mode and format (not the key's value)."""
        if not self.path.exists():
            return [] if self.create else [f"[layers.key_provider.file] path: {self.path} does not exist "
                                           "(set create = true to generate one)"]
        try:
            material = read_keypair_file(self.path)  # checks the mode (0600) and the format
        except ConfigError as exc:
            return [f"[layers.key_provider.file] path: {p}" for p in exc.problems]
        material[:] = bytes(len(material))
        return []

    def attest(self, public_key: bytes, nonce: bytes) -> bytes:
        return b""

    def measurement(self) -> str | None:
        return None
