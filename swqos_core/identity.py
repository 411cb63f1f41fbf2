"""Solana identity keys: base58 text form and the on-disk key file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import base58
from nacl.signing import SigningKey

from swqos_core.errors import ConfigError
from swqos_core.files import write_private_file


def to_base58(public_key: bytes) -> str:
    return base58.b58encode(public_key).decode()


def from_base58(text: str) -> bytes:
    try:
        raw = base58.b58decode(text.strip())
    except ValueError:
        raise ValueError("not valid base58") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this decodes to {len(raw)}")
    return raw


def check_private_file(path: Path) -> None:
    """Refuse a key file that anyone but its owner can read or write."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} let others read it; run: chmod 600 {path}"
        )


def generate_keypair_file(path: Path) -> bytes:
    """Write a new identity key in Solana's keypair-file format (JSON array of 64 bytes); return the public key."""
    key = SigningKey.generate()
    keypair = bytes(key) + bytes(key.verify_key)
    write_private_file(path, json.dumps(list(keypair)).encode())
    return bytes(key.verify_key)


def read_keypair_file(path: Path) -> bytearray:
    """Read a Solana keypair file; return the 32-byte seed (checked against the stored public half)."""
    check_private_file(path)
    try:
        values = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable Solana keypair file ({type(exc).__name__})") from None
    if not (isinstance(values, list) and len(values) == 64 and all(isinstance(v, int) and 0 <= v < 256 for v in values)):
        raise ConfigError(f"{path}: a Solana keypair file is a JSON array of 64 bytes")
    raw = bytearray(values)
    seed, public = raw[:32], bytes(raw[32:])
    if bytes(SigningKey(bytes(seed)).verify_key) != public:
        raise ConfigError(f"{path}: the public half does not match the private half")
    raw[:] = b"\0" * 64
    return seed


def generate_in_child(path: Path) -> bytes:
    """Create a keypair file in a short-lived child process; return only the public key.

    The dev stack's host-proxy process uses this so that it never holds identity key material,
    not even a throwaway one.
    """
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "swqos_core.identity", str(path)],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ConfigError(f"could not create identity key {path}: {result.stderr.strip()[-300:]}")
    return from_base58(result.stdout.strip())


if __name__ == "__main__":
    import sys

    print(to_base58(generate_keypair_file(Path(sys.argv[1]))))

