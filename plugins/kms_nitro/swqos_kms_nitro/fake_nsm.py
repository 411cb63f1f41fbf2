"""A fake NSM for tests and the dev setup: documents in exactly the shape a real NSM emits.

It speaks the same CBOR request/response protocol as ``/dev/nsm`` (it is an
:class:`~swqos_kms_nitro.nsm.NsmTransport`), and its documents are byte-for-byte the real layout:
untagged COSE_Sign1, protected header ``a1 01 38 22``, empty unprotected map, an indefinite-length
payload map with the keys in the NSM's order, unrequested optionals as CBOR null, 48-byte PCRs
0..15, a raw 96-byte r||s signature, and a P-384 chain leaf <- instance <- zonal <- regional <- root
with the real profiles (pathLen 2/1/0, leaf CA:false digitalSignature, leaf valid three hours).

The root here is a *test* root: documents verify only when the verifier is given this root,
never against the pinned AWS root. Never use any of this outside tests and development.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from swqos_kms_nitro.nsm import MAX_NONCE, MAX_PUBLIC_KEY, MAX_USER_DATA, NSM_REQUEST_MAX

Variant = Literal["normal", "debug", "expired"]

ROOT_CERT_FILE = "fake-nsm-root.pem"
ROOT_KEY_FILE = "fake-nsm-root.key"


def default_pcrs(label: str = "swqos-dev-image") -> dict[int, bytes]:
    """Stable made-up measurements: PCR0/1/2 derived from ``label``, PCR3..15 zero like a real enclave
    without a role/instance/signing binding (PCR8 stays zero for an unsigned EIF)."""
    pcrs = {i: bytes(48) for i in range(16)}
    for i in (0, 1, 2):
        pcrs[i] = hashlib.sha384(f"{label}/pcr{i}".encode()).digest()
    return pcrs


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "swqos test"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "fake-nsm"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    path_length: int | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA384())


@dataclass
class FakePki:
    """The test root (cert + key). Intermediates and leaves are made per :class:`FakeNsm`."""

    root_cert: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> FakePki:
        key = ec.generate_private_key(ec.SECP384R1())
        now = datetime.now(UTC)
        name = _name("fake.nitro-enclaves")
        cert = _issue("fake.nitro-enclaves", key, name, key, not_before=now - timedelta(days=1),
                      not_after=now + timedelta(days=3650), ca=True, path_length=None)
        return cls(cert, key)

    @property
    def root_pem(self) -> bytes:
        return self.root_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def root_sha256(self) -> str:
        return hashlib.sha256(self.root_cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def save(self, directory: Path) -> None:
        """Write the root certificate and (0600) key, so another process can run a matching fake NSM."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ROOT_CERT_FILE).write_bytes(self.root_pem)
        key_pem = self.root_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path = directory / ROOT_KEY_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)

    @classmethod
    def load(cls, directory: Path) -> FakePki:
        cert = x509.load_pem_x509_certificate((directory / ROOT_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((directory / ROOT_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("fake NSM root key is not an EC key")
        return cls(cert, key)


def _cbor_indefinite_map(items: list[tuple[str, Any]]) -> bytes:
    """The NSM writes its payload as an indefinite-length map (``bf ... ff``); cbor2 writes definite
    maps, so the outer map is assembled by hand around cbor2-encoded keys and values."""
    return b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in items) + b"\xff"


class FakeNsm:
    """An NSM stand-in: ``request(cbor) -> cbor`` like ``/dev/nsm``.

    ``variant="debug"`` reports all-zero PCRs (``nitro-cli run-enclave --debug-mode``);
    ``variant="expired"`` signs with a leaf whose validity ended an hour ago.
    """

    def __init__(
        self,
        pki: FakePki,
        *,
        pcrs: dict[int, bytes] | None = None,
        variant: Variant = "normal",
        module_id: str | None = None,
    ) -> None:
        self.pki = pki
        self.variant = variant
        base = dict(default_pcrs() if pcrs is None else pcrs)
        if any(len(v) != 48 for v in base.values()):
            raise ValueError("fake NSM PCRs must be 48 bytes (SHA-384)")
        if variant == "debug":
            base = {i: bytes(48) for i in base}
        self.pcrs = base
        self.locked = set(range(16))
        self.module_id = module_id or f"i-{os.urandom(8).hex()[:17]}-enc{os.urandom(8).hex()}"
        self._lock = threading.Lock()
        self._make_chain()

    def _make_chain(self) -> None:
        now = datetime.now(UTC)
        root_name = self.pki.root_cert.subject
        regional_key = ec.generate_private_key(ec.SECP384R1())
        zonal_key = ec.generate_private_key(ec.SECP384R1())
        instance_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf_key = ec.generate_private_key(ec.SECP384R1())
        regional = _issue("regional.fake.nitro-enclaves", regional_key, root_name, self.pki.root_key,
                          not_before=now - timedelta(days=2), not_after=now + timedelta(days=18),
                          ca=True, path_length=2)
        zonal = _issue("zonal.fake.nitro-enclaves", zonal_key, regional.subject, regional_key,
                       not_before=now - timedelta(days=1), not_after=now + timedelta(days=5),
                       ca=True, path_length=1)
        instance = _issue("instance.fake.nitro-enclaves", instance_key, zonal.subject, zonal_key,
                          not_before=now - timedelta(hours=3), not_after=now + timedelta(days=1),
                          ca=True, path_length=0)
        if self.variant == "expired":
            leaf_from, leaf_to = now - timedelta(hours=4), now - timedelta(hours=1)
        else:
            leaf_from, leaf_to = now - timedelta(seconds=5), now + timedelta(hours=3)
        leaf = _issue(f"{self.module_id}.fake.aws", self.leaf_key, instance.subject, instance_key,
                      not_before=leaf_from, not_after=leaf_to, ca=False, path_length=None)
        # The NSM's order: [ROOT, INTERM_1, ..., INTERM_N].
        chain = (self.pki.root_cert, regional, zonal, instance)
        self.cabundle = [c.public_bytes(serialization.Encoding.DER) for c in chain]
        self.certificate = leaf.public_bytes(serialization.Encoding.DER)

    # --- document --------------------------------------------------------------------------

    def document(
        self,
        *,
        public_key: bytes | None = None,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        timestamp_ms: int | None = None,
    ) -> bytes:
        """A signed document, as the NSM's Attestation request would return."""
        if self.variant == "expired" and timestamp_ms is None:
            timestamp_ms = int((time.time() - 2 * 3600) * 1000)
        payload = _cbor_indefinite_map([
            ("module_id", self.module_id),
            ("digest", "SHA384"),
            ("timestamp", timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)),
            ("pcrs", dict(sorted(self.pcrs.items()))),
            ("certificate", self.certificate),
            ("cabundle", list(self.cabundle)),
            ("public_key", public_key),
            ("user_data", user_data),
            ("nonce", nonce),
        ])
        protected = bytes.fromhex("a1013822")
        to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
        r, s = decode_dss_signature(self.leaf_key.sign(to_sign, ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        return cbor2.dumps([protected, {}, payload, signature])

    # --- NsmTransport ------------------------------------------------------------------------

    def request(self, data: bytes) -> bytes:
        with self._lock:
            return cbor2.dumps(self._answer(data))

    def _answer(self, data: bytes) -> Any:
        if len(data) > NSM_REQUEST_MAX:
            return {"Error": "InputTooLarge"}
        try:
            req = cbor2.loads(data)
        except Exception:  # the real driver answers garbage with InvalidArgument too
            return {"Error": "InvalidArgument"}
        if req == "GetRandom":
            return {"GetRandom": {"random": os.urandom(256)}}
        if req == "DescribeNSM":
            return {"DescribeNSM": {"version_major": 1, "version_minor": 0, "version_patch": 0,
                                    "module_id": self.module_id, "max_pcrs": 32,
                                    "locked_pcrs": sorted(self.locked), "digest": "SHA384"}}
        if not (isinstance(req, dict) and len(req) == 1):
            return {"Error": "InvalidOperation"}
        ((op, body),) = req.items()
        if not isinstance(body, dict):
            return {"Error": "InvalidArgument"}
        if op == "Attestation":
            pk, ud, nn = body.get("public_key"), body.get("user_data"), body.get("nonce")
            limits = ((pk, MAX_PUBLIC_KEY), (ud, MAX_USER_DATA), (nn, MAX_NONCE))
            if any(v is not None and (not isinstance(v, bytes) or len(v) > lim) for v, lim in limits):
                return {"Error": "InvalidArgument"}
            return {"Attestation": {"document": self.document(public_key=pk, user_data=ud, nonce=nn)}}
        if op == "DescribePCR":
            idx = body.get("index")
            if not isinstance(idx, int) or not 0 <= idx < 32:
                return {"Error": "InvalidIndex"}
            return {"DescribePCR": {"lock": idx in self.locked, "data": self.pcrs.get(idx, bytes(48))}}
        return {"Error": "InvalidOperation"}
