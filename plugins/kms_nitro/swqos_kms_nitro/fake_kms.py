"""A fake AWS KMS on 127.0.0.1 that the real boto3 talks to through ``endpoint_url``.

It speaks the KMS JSON 1.1 protocol (``POST /``, ``X-Amz-Target: TrentService.<Op>``,
``application/x-amz-json-1.1``, base64 blobs, ``{"__type": ..., "Message": ...}`` errors), so
the client runs botocore's real serializer, SigV4 signer, parser, retry and error paths.

What it does like KMS:

- ``Encrypt`` binds the ``EncryptionContext`` (AES-GCM additional data); ``Decrypt`` with a
  different context fails with ``InvalidCiphertextException``; a wrong ``KeyId`` gives
  ``IncorrectKeyException``.
- ``Decrypt`` with ``Recipient`` verifies the attestation document (COSE, chain to the configured
  root, which is the fake NSM's test root, validity now, freshness, an RSA public key), exposes
  ``kms:RecipientAttestation:ImageSha384`` / ``PCR<n>`` to the key policy, evaluates the policy
  (:mod:`swqos_kms_nitro.policy`), and answers ``CiphertextForRecipient`` in KMS's exact CMS layout,
  with no ``Plaintext``.
- Without ``Recipient`` the policy decides with no attestation keys; if it allows, ``Plaintext`` is
  returned (as KMS would), which lets tests prove the enclave never uses it.
- ``GenerateRandom`` (with or without Recipient).

What it does not do: check SigV4 signatures or principals (one caller), grants, aliases, quotas.
It is a test double: never point a production enclave at it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from swqos_kms_nitro import attestation, cms, policy

MAX_BODY = 512 * 1024
BLOB_MAGIC = b"FKMS1"
#: KMS does not publish its freshness window; the fake uses five minutes.
ATTESTATION_MAX_AGE = 300.0

#: A test hook: ``tamper(response, plaintext, recipient_key) -> response`` rewrites a Decrypt answer.
Tamper = Callable[[dict[str, Any], bytes, "rsa.RSAPublicKey | None"], dict[str, Any]]


class KmsFault(Exception):
    def __init__(self, kind: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


@dataclass
class FakeKey:
    key_id: str
    arn: str
    policy: dict[str, Any]
    secret: bytes = field(repr=False)
    enabled: bool = True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise KmsFault("ValidationException", f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KmsFault("SerializationException", f"{name} is not valid base64") from None


def _context_aad(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


class FakeKms:
    """The server and its key store. ``with FakeKms(root) as kms: kms.endpoint_url``."""

    def __init__(
        self,
        attestation_root: x509.Certificate,
        *,
        region: str = "eu-west-1",
        account: str = "111122223333",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.root = attestation_root
        self.region = region
        self.account = account
        self.keys: dict[str, FakeKey] = {}
        self.tamper: Tamper | None = None
        #: Every call as (operation, request JSON), for tests that assert what was (not) asked.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeKms:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kms", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeKms:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- keys --------------------------------------------------------------------------------

    def create_key(self, key_policy: dict[str, Any]) -> FakeKey:
        policy.validate_policy(key_policy)
        key_id = str(uuid.uuid4())
        key = FakeKey(key_id, f"arn:aws:kms:{self.region}:{self.account}:key/{key_id}", key_policy, os.urandom(32))
        with self._lock:
            self.keys[key_id] = key
        return key

    def _find_key(self, key_ref: str) -> FakeKey:
        for key in self.keys.values():
            if key_ref in (key.key_id, key.arn):
                return key
        raise KmsFault("NotFoundException", f"Key '{key_ref}' does not exist")

    # --- operations ----------------------------------------------------------------------------

    def _context(self, body: dict[str, Any]) -> dict[str, str]:
        ctx = body.get("EncryptionContext") or {}
        if not isinstance(ctx, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ctx.items()):
            raise KmsFault("ValidationException", "EncryptionContext must map strings to strings")
        return ctx

    def _deny(self, key: FakeKey, action: str, why: str) -> KmsFault:
        return KmsFault(
            "AccessDeniedException",
            f"User: arn:aws:sts::{self.account}:assumed-role/fake/enclave is not authorized to perform: "
            f"{action} on resource: {key.arn} because {why}",
        )

    def _recipient(self, body: dict[str, Any]) -> tuple[rsa.RSAPublicKey | None, dict[str, str]]:
        """Check ``Recipient``; return the key to encrypt to and the attestation condition keys."""
        recipient = body.get("Recipient")
        if recipient is None:
            return None, {}
        if not isinstance(recipient, dict):
            raise KmsFault("ValidationException", "Recipient must be a structure")
        if recipient.get("KeyEncryptionAlgorithm") != "RSAES_OAEP_SHA_256":
            raise KmsFault("ValidationException", "KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256")
        doc_bytes = _unb64(recipient.get("AttestationDocument"), "AttestationDocument")
        if not 1 <= len(doc_bytes) <= 262144:
            raise KmsFault("ValidationException", "AttestationDocument length out of range")
        try:
            doc = attestation.verify(doc_bytes, root=self.root, max_age=ATTESTATION_MAX_AGE, allow_debug=True)
        except attestation.AttestationError as exc:
            raise KmsFault("AccessDeniedException", f"the attestation document is not valid: {exc.reason}") from None
        if doc.public_key is None:
            raise KmsFault("ValidationException", "the attestation document has no public_key")
        try:
            pub = serialization.load_der_public_key(doc.public_key)
        except ValueError:
            raise KmsFault("ValidationException", "attestation public_key is not DER SubjectPublicKeyInfo") from None
        if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size != 2048:
            raise KmsFault("ValidationException", "the attestation public_key must be RSA-2048")
        # KMS exposes lower-case hex; PCR0 doubles as ImageSha384.
        keys = {f"{policy.ATTESTATION_PREFIX}PCR{i}": v.hex() for i, v in doc.pcrs.items()}
        if 0 in doc.pcrs:
            keys[policy.IMAGE_KEY] = doc.pcrs[0].hex()
        return pub, keys

    def op_encrypt(self, body: dict[str, Any]) -> dict[str, Any]:
        key = self._find_key(str(body.get("KeyId", "")))
        plaintext = _unb64(body.get("Plaintext"), "Plaintext")
        if not 1 <= len(plaintext) <= 4096:
            raise KmsFault("ValidationException", "Plaintext must be 1..4096 bytes")
        ctx = self._context(body)
        cond = {f"kms:EncryptionContext:{k}": v for k, v in ctx.items()}
        allowed, why = policy.evaluate(key.policy, "kms:Encrypt", cond)
        if not allowed:
            raise self._deny(key, "kms:Encrypt", why)
        nonce = os.urandom(12)
        sealed = AESGCM(key.secret).encrypt(nonce, plaintext, _context_aad(ctx) + key.arn.encode())
        blob = BLOB_MAGIC + uuid.UUID(key.key_id).bytes + nonce + sealed
        return {"KeyId": key.arn, "CiphertextBlob": _b64(blob), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    def op_decrypt(self, body: dict[str, Any]) -> dict[str, Any]:
        blob = _unb64(body.get("CiphertextBlob"), "CiphertextBlob")
        if not 1 <= len(blob) <= 6144 or not blob.startswith(BLOB_MAGIC) or len(blob) < len(BLOB_MAGIC) + 16 + 12 + 16:
            raise KmsFault("InvalidCiphertextException", "")
        blob_key_id = str(uuid.UUID(bytes=blob[len(BLOB_MAGIC):len(BLOB_MAGIC) + 16]))
        key = self._find_key(blob_key_id)
        if body.get("KeyId") not in (None, key.key_id, key.arn):
            raise KmsFault("IncorrectKeyException",
                           "The key ID in the request does not identify the key that encrypted the ciphertext")
        if not key.enabled:
            raise KmsFault("DisabledException", f"{key.arn} is disabled.")
        ctx = self._context(body)
        recipient_key, att_keys = self._recipient(body)
        cond = {f"kms:EncryptionContext:{k}": v for k, v in ctx.items()} | att_keys
        allowed, why = policy.evaluate(key.policy, "kms:Decrypt", cond)
        if not allowed:
            raise self._deny(key, "kms:Decrypt", why)
        rest = blob[len(BLOB_MAGIC) + 16:]
        try:
            plaintext = AESGCM(key.secret).decrypt(rest[:12], rest[12:], _context_aad(ctx) + key.arn.encode())
        except InvalidTag:
            raise KmsFault("InvalidCiphertextException", "") from None
        response: dict[str, Any] = {"KeyId": key.arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
        if recipient_key is not None:
            response["CiphertextForRecipient"] = _b64(cms.build_envelope(plaintext, recipient_key))
        else:
            response["Plaintext"] = _b64(plaintext)
        if self.tamper is not None:
            response = self.tamper(response, plaintext, recipient_key)
        return response

    def op_generate_random(self, body: dict[str, Any]) -> dict[str, Any]:
        n = body.get("NumberOfBytes")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024:
            raise KmsFault("ValidationException", "NumberOfBytes must be 1..1024")
        recipient_key, _ = self._recipient(body)
        data = os.urandom(n)
        if recipient_key is not None:
            return {"CiphertextForRecipient": _b64(cms.build_envelope(data, recipient_key))}
        return {"Plaintext": _b64(data)}

    OPERATIONS = {"Encrypt": op_encrypt, "Decrypt": op_decrypt, "GenerateRandom": op_generate_random}

    def handle(self, target: str, content_type: str, authorization: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """One request → (HTTP status, JSON body). Separate from HTTP for direct testing."""
        try:
            if not target.startswith("TrentService."):
                raise KmsFault("UnknownOperationException", "")
            op = target.removeprefix("TrentService.")
            if op not in self.OPERATIONS:
                raise KmsFault("UnknownOperationException", f"{op} is not implemented by the fake KMS")
            if content_type.split(";")[0].strip() != "application/x-amz-json-1.1":
                raise KmsFault("SerializationException", "Content-Type must be application/x-amz-json-1.1")
            if not authorization.startswith("AWS4-HMAC-SHA256 Credential=") or "/kms/aws4_request" not in authorization:
                raise KmsFault("MissingAuthenticationTokenException", "Request is missing Authentication Token")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise KmsFault("SerializationException", "body is not JSON") from None
            if not isinstance(body, dict):
                raise KmsFault("SerializationException", "body is not a JSON object")
            with self._lock:
                self.calls.append((op, body))
            return 200, self.OPERATIONS[op](self, body)
        except KmsFault as fault:
            return fault.status, {"__type": fault.kind, "Message": fault.message}
        except Exception as exc:  # never let a bug look like success
            return 500, {"__type": "KMSInternalException", "Message": type(exc).__name__}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        kms = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    status, body = 413, {"__type": "ValidationException", "Message": "request too large"}
                    self.close_connection = True
                else:
                    raw = self.rfile.read(length)
                    status, body = kms.handle(
                        self.headers.get("X-Amz-Target", ""), self.headers.get("Content-Type", ""),
                        self.headers.get("Authorization", ""), raw,
                    )
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(out)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.send_header("Date", datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and dev output
                pass

        return Handler
