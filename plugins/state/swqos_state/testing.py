"""A real redis-server on a loopback port in a temp directory, with an ACL user and optionally TLS,
for the tests and the benchmark (not used by the store itself).

The ACL is the one plugins/state/README.md documents, so the tests prove it is enough.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
USER = "swqos"
PASSWORD = "correct-horse-battery-staple-7f3a"  # noqa: S105 (a loopback test server's password)
#: The ACL rule of the docs: only our keys, only the commands the store sends.
ACL_COMMANDS = ("+ping +time +select +evalsha +eval +script|load +script|exists +get +set +del "
                "+incr +lpush +ltrim +pexpire +llen +lindex +pttl +xadd +xread +xrevrange +zadd +zrangebyscore "
                "+zremrangebyscore +hset +hexists +hlen +hscan +hget")


def available() -> bool:
    return Path(REDIS_SERVER).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swqos test redis CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = tmp / "ca.pem", tmp / "redis.crt", tmp / "redis.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class RedisServer:
    def __init__(self, root: Path, *, tls: bool = False) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.password_file = root / "redis.password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.ca = None
        lines = ["bind 127.0.0.1", "protected-mode yes", f"dir {root}", 'save ""', "appendonly no",
                 "user default off", f"user {USER} on >{PASSWORD} ~swqos:* resetchannels -@all {ACL_COMMANDS}"]
        if tls:
            self.ca, cert, key = _cert(root)
            lines += ["port 0", f"tls-port {self.port}", f"tls-cert-file {cert}", f"tls-key-file {key}",
                      f"tls-ca-cert-file {self.ca}", "tls-auth-clients no"]
        else:
            lines.append(f"port {self.port}")
        self.conf = root / "redis.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def settings(self, **extra) -> dict:
        """A ``[layers.store.redis]`` table for this server."""
        out = {"url": self.url, "username": USER, "password_file": str(self.password_file),
               "sync_interval": 0.05, "grace_seconds": 0.5}
        if self.ca:
            out["ca_file"] = str(self.ca)
        out.update(extra)
        return out

    def start(self) -> None:
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.root / 'redis.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
