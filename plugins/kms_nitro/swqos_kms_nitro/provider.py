"""Key providers ``nitro`` and ``nitro_fake``: unseal the identity key from KMS at enclave boot.

Boot sequence (``load``):

1. read the sealed ``CiphertextBlob`` (made by ``swqos kms seal``);
2. make an ephemeral RSA-2048 key and ask the NSM for an attestation document carrying its
   SubjectPublicKeyInfo;
3. check that document ourselves (chain, signature, not debug mode, expected PCRs if configured),
   so a misbuilt or debug enclave stops with a clear message rather than a KMS AccessDenied;
4. call KMS ``Decrypt`` through boto3 with ``Recipient={RSAES_OAEP_SHA_256, document}`` and an
   ``EncryptionContext`` naming the validator (``validator=<base58 public key>``);
5. refuse an answer carrying ``Plaintext``; open ``CiphertextForRecipient`` (strict CMS);
6. the 32-byte result must derive ``expected_public_key``, since KMS answers are not
   authenticated and this check is what stops a forged envelope; then hand the seed over.

Any failure raises :class:`~swqos_core.errors.ConfigError`, so the enclave exits non-zero and never
signs. ``nitro`` uses ``/dev/nsm`` and the pinned AWS root only. ``nitro_fake`` is the same code on
the fake NSM and its test root. It is registered ``insecure``, so a config can select it only with
``[swqos] allow_test_plugins = true``.
"""

from __future__ import annotations

import hmac
import logging
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from swqos_core.errors import ConfigError
from swqos_core.identity import from_base58
from swqos_core.layers import BuildContext, KeyMaterial
from swqos_core.schema import Secret
from swqos_kms_nitro import attestation, cms
from swqos_kms_nitro.forward import Forwarder, vsock_connector
from swqos_kms_nitro.nsm import DeviceTransport, NsmClient, NsmError, NsmTransport

#: Written into ``user_data`` of GetIdentity documents: says what ``public_key`` holds.
IDENTITY_USER_DATA = attestation.IDENTITY_USER_DATA
#: The context key the provider always sends, with the validator's base58 public key.
VALIDATOR_CONTEXT_KEY = "validator"
#: Our own document is checked with this freshness bound (it was made a moment ago).
SELF_CHECK_MAX_AGE = 300.0


@dataclass
class NitroKeySettings:
    """``[layers.key_provider.nitro]``"""

    #: base58 Ed25519 public key the unsealed seed must derive (checked here and by the core).
    expected_public_key: str
    #: KMS key id or ARN that sealed the identity key.
    key_id: str
    region: str
    #: The sealed identity key: the raw CiphertextBlob written by ``swqos kms seal``.
    ciphertext_file: Path
    #: Extra EncryptionContext entries; ``validator=<expected_public_key>`` is always added.
    encryption_context: dict[str, str] = field(default_factory=dict)
    #: Override the KMS URL (https only for ``nitro``). Default: https://kms.<region>.amazonaws.com.
    endpoint_url: str | None = None
    #: Port of the parent's vsock-proxy; when set, a local forwarder relays TCP to it (see README).
    vsock_proxy_port: int | None = None
    vsock_cid: int = 3
    #: Loopback port the forwarder listens on; the KMS hostname must resolve to 127.0.0.1.
    forward_port: int = 443
    #: CA bundle for the KMS TLS certificate; default: botocore's bundled cacert.pem.
    ca_bundle: Path | None = None
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    #: Self-check before calling KMS: PCR index → allowed hex values (same as the key policy).
    expected_pcrs: dict[str, list[str]] = field(default_factory=dict)
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_attempts: int = 3
    nsm_device: Path = Path("/dev/nsm")

    def __post_init__(self) -> None:
        if not self.key_id:
            raise ValueError("key_id must not be empty")
        if not 1 <= self.max_attempts <= 10:
            raise ValueError("max_attempts must be 1..10")
        if self.vsock_proxy_port is not None and not 1 <= self.vsock_proxy_port <= 0xFFFFFFFF:
            raise ValueError("vsock_proxy_port out of range")


@dataclass
class NitroFakeKeySettings(NitroKeySettings):
    """``[layers.key_provider.nitro_fake]``: as ``nitro``, plus the fake NSM's test PKI."""

    #: Directory holding fake-nsm-root.pem and fake-nsm-root.key (written by ``swqos kms dev``).
    fake_pki_dir: Path | None = None
    #: PCR index → hex value the fake NSM reports (others: the defaults of fake_nsm.default_pcrs).
    fake_pcrs: dict[str, str] = field(default_factory=dict)
    fake_variant: Literal["normal", "debug", "expired"] = "normal"


_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z]{2}(-[a-z]+)+-\d:\d{12}:(key/[0-9a-f-]{36}|alias/[A-Za-z0-9/_-]+)")
_KEY_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ALIAS = re.compile(r"alias/[A-Za-z0-9/_-]+")


def _parse_expected_pcrs(raw: dict[str, list[str]], problems: list[str]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for key, values in raw.items():
        try:
            idx = int(key)
            if not 0 <= idx < 32:
                raise ValueError
            out[idx] = [attestation.parse_pcr_hex(v) for v in values]
        except ValueError as exc:
            problems.append(f"expected_pcrs.{key}: {exc or 'index must be 0..31'}")
    return out


class NitroKeyProvider:
    """The KeyProvider. ``transport`` and ``root`` decide real vs fake; everything else is shared."""

    def __init__(
        self,
        settings: NitroKeySettings,
        ctx: BuildContext,
        *,
        transport: NsmTransport,
        root: x509.Certificate,
        allow_plain_http: bool = False,
        default_credentials: tuple[str, str] | None = None,
    ) -> None:
        problems: list[str] = []
        self.settings = settings
        self.log: logging.Logger = ctx.logger
        try:
            self.expected_public_key = from_base58(settings.expected_public_key)
        except ValueError as exc:
            problems.append(f"expected_public_key: {exc}")
            self.expected_public_key = b""
        ctx_map = dict(settings.encryption_context)
        if ctx_map.get(VALIDATOR_CONTEXT_KEY, settings.expected_public_key) != settings.expected_public_key:
            problems.append("encryption_context.validator must equal expected_public_key (it is added automatically)")
        ctx_map[VALIDATOR_CONTEXT_KEY] = settings.expected_public_key
        self.encryption_context = ctx_map
        self.expected_pcrs = _parse_expected_pcrs(settings.expected_pcrs, problems)
        self.endpoint_url = settings.endpoint_url
        if self.endpoint_url is None:
            default_port = settings.forward_port == 443 or settings.vsock_proxy_port is None
            port = "" if default_port else f":{settings.forward_port}"
            self.endpoint_url = f"https://kms.{settings.region}.amazonaws.com{port}"
        scheme = urlsplit(self.endpoint_url).scheme
        if scheme != "https" and not allow_plain_http:
            problems.append("endpoint_url must be https:// (TLS to KMS is terminated inside the enclave)")
        if scheme not in ("https", "http"):
            problems.append("endpoint_url must be an http(s) URL")
        if problems:
            raise ConfigError(problems)
        self.transport = transport
        self.nsm = NsmClient(transport)
        self.root = root
        self.default_credentials = default_credentials
        self._measurement: str | None = None

    def check(self, where: str) -> list[str]:
        """What ``swqos config check`` reports without contacting KMS or the NSM."""
        s = self.settings
        problems = []
        if not s.ciphertext_file.is_file():
            problems.append(f"{where} ciphertext_file: {s.ciphertext_file} does not exist (create it with swqos kms seal)")
        if not _REGION.fullmatch(s.region):
            problems.append(f"{where} region = {s.region!r} is not an AWS region name (e.g. us-east-1)")
        if not (_KEY_ARN.fullmatch(s.key_id) or _KEY_UUID.fullmatch(s.key_id) or _ALIAS.fullmatch(s.key_id)):
            problems.append(f"{where} key_id = {s.key_id!r} is not a KMS key ARN, key id or alias")
        if not self.expected_pcrs:
            problems.append(f"{where} expected_pcrs is empty: list at least PCR0 of the image KMS releases the key to")
        return problems

    # --- KeyProvider ------------------------------------------------------------------------

    def load(self) -> KeyMaterial:
        try:
            return self._load()
        except ConfigError:
            raise
        except Exception as exc:  # fail closed: whatever went wrong, the enclave does not start
            raise ConfigError(f"nitro key provider failed: {type(exc).__name__}") from None

    def attest(self, public_key: bytes, nonce: bytes) -> bytes:
        """An NSM document with ``public_key`` = the identity key, ``nonce`` = the caller's nonce,
        ``user_data`` = a label naming that binding. Check with :func:`attestation.verify_identity`."""
        return self.nsm.attestation(
            public_key=bytes(public_key), user_data=IDENTITY_USER_DATA, nonce=bytes(nonce) if nonce else None
        )

    def measurement(self) -> str | None:
        if self._measurement is None:
            self._measurement = self.nsm.describe_pcr(0).data.hex()
        return self._measurement

    async def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if callable(close):
            close()

    # --- boot ------------------------------------------------------------------------------------

    def _read_ciphertext(self) -> bytes:
        path = self.settings.ciphertext_file
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read ciphertext_file {path}: {exc.strerror}") from None
        if not 1 <= len(blob) <= 6144:
            raise ConfigError(f"ciphertext_file {path}: {len(blob)} bytes, a KMS CiphertextBlob is 1..6144")
        return blob

    def _attest_for_kms(self, spki: bytes) -> bytes:
        try:
            document = self.nsm.attestation(public_key=spki)
        except NsmError as exc:
            raise ConfigError(f"cannot get an attestation document: {exc}") from None
        try:
            doc = attestation.verify(
                document, root=self.root, max_age=SELF_CHECK_MAX_AGE, public_key=spki,
                expected_pcrs=self.expected_pcrs or None,
            )
        except attestation.AttestationError as exc:
            raise ConfigError(f"this enclave's own attestation document is refused: {exc.reason}") from None
        self._measurement = doc.pcr_hex(0)
        self.log.info("attested: module %s, PCR0 %s", doc.module_id, self._measurement)
        return document

    def _kms_client(self) -> Any:
        import boto3
        from botocore.config import Config

        s = self.settings
        creds: dict[str, str] = {}
        if s.aws_access_key_id is not None and s.aws_secret_access_key is not None:
            creds = {"aws_access_key_id": s.aws_access_key_id.reveal().decode(),
                     "aws_secret_access_key": s.aws_secret_access_key.reveal().decode()}
            if s.aws_session_token is not None:
                creds["aws_session_token"] = s.aws_session_token.reveal().decode()
        elif self.default_credentials is not None:
            creds = {"aws_access_key_id": self.default_credentials[0],
                     "aws_secret_access_key": self.default_credentials[1]}
        session = boto3.session.Session(region_name=s.region, **creds)
        config = Config(
            connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
            retries={"max_attempts": s.max_attempts, "mode": "standard"},
        )
        verify: Any = str(s.ca_bundle) if s.ca_bundle is not None else True
        return session.client("kms", endpoint_url=self.endpoint_url, verify=verify, config=config)

    def _start_forwarder(self) -> Forwarder | None:
        s = self.settings
        if s.vsock_proxy_port is None:
            return None
        host = urlsplit(self.endpoint_url).hostname or ""
        try:
            addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError:
            addrs = set()
        if not addrs or not all(a in ("127.0.0.1", "::1") for a in addrs):
            raise ConfigError(
                f"vsock forwarding needs {host} to resolve to 127.0.0.1 inside the enclave "
                f"(add '127.0.0.1 {host}' to the image's /etc/hosts)"
            )
        try:
            return Forwarder(vsock_connector(s.vsock_cid, s.vsock_proxy_port), ("127.0.0.1", s.forward_port)).start()
        except OSError as exc:
            raise ConfigError(f"cannot start the KMS vsock forwarder: {exc}") from None

    def _decrypt(self, blob: bytes, document: bytes) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        forwarder = self._start_forwarder()
        started = time.monotonic()
        try:
            client = self._kms_client()
            return client.decrypt(
                CiphertextBlob=blob,
                KeyId=self.settings.key_id,
                EncryptionContext=self.encryption_context,
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
                Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": document},
            )
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = err.get("Code", "?"), err.get("Message", "")
            hint = {
                "AccessDeniedException": " (do this image's PCRs match the key policy? is it a debug enclave?)",
                "InvalidCiphertextException": " (wrong ciphertext_file, or the EncryptionContext differs from sealing)",
                "IncorrectKeyException": " (key_id is not the key that sealed ciphertext_file)",
            }.get(code, "")
            raise ConfigError(f"KMS Decrypt refused: {code}: {message}{hint}") from None
        except NoCredentialsError:
            raise ConfigError("no AWS credentials for KMS (set aws_access_key_id/aws_secret_access_key)") from None
        except BotoCoreError as exc:
            raise ConfigError(f"KMS unreachable at {self.endpoint_url}: {type(exc).__name__}: {exc}") from None
        finally:
            if forwarder is not None:
                forwarder.stop()
            self.log.debug("KMS Decrypt took %.3f s", time.monotonic() - started)

    def _load(self) -> KeyMaterial:
        blob = self._read_ciphertext()
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        spki = rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        document = self._attest_for_kms(spki)
        response = self._decrypt(blob, document)
        if response.get("Plaintext"):
            # With Recipient, KMS leaves Plaintext empty. A Plaintext means someone answered who
            # should not have, or a policy grants Decrypt without attestation: never use it.
            raise ConfigError(
                "KMS answered with Plaintext: refused (the key must arrive encrypted to this enclave; "
                "check the key policy for a Decrypt grant without attestation)"
            )
        envelope = response.get("CiphertextForRecipient")
        if not isinstance(envelope, bytes) or not envelope:
            raise ConfigError("KMS answer has no CiphertextForRecipient")
        try:
            plain = cms.open_envelope(envelope, rsa_key)
        except cms.EnvelopeError as exc:
            raise ConfigError(str(exc)) from None
        finally:
            del rsa_key
        try:
            if len(plain) != 32:
                raise ConfigError(f"unsealed secret is {len(plain)} bytes, expected a 32-byte Ed25519 seed")
            derived = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(plain)).public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            if not hmac.compare_digest(derived, self.expected_public_key):
                raise ConfigError(
                    "the key unsealed from KMS does not match expected_public_key: refusing to start "
                    "(a forged envelope, or the wrong ciphertext_file)"
                )
            seed = bytearray(plain)
        finally:
            plain[:] = bytes(len(plain))
        arn = response.get("KeyId") or self.settings.key_id
        self.log.info("identity key unsealed from KMS key %s", arn)
        return KeyMaterial(seed=seed, origin=f"kms:{arn}")


def make_nitro(settings: NitroKeySettings, ctx: BuildContext) -> NitroKeyProvider:
    """Factory of ``nitro``: the real ``/dev/nsm`` and the pinned AWS root."""
    return NitroKeyProvider(settings, ctx, transport=DeviceTransport(settings.nsm_device), root=attestation.aws_root())


def make_nitro_fake(settings: NitroFakeKeySettings, ctx: BuildContext) -> NitroKeyProvider:
    """Factory of ``nitro_fake`` (test implementation): the fake NSM and its test root."""
    from swqos_kms_nitro.fake_nsm import FakeNsm, FakePki, default_pcrs

    if settings.fake_pki_dir is None:
        raise ConfigError("fake_pki_dir is required (run: swqos kms dev --dev-dir DIR)")
    try:
        pki = FakePki.load(settings.fake_pki_dir)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the fake NSM PKI from {settings.fake_pki_dir}: {exc}") from None
    pcrs = default_pcrs()
    problems: list[str] = []
    for key, value in settings.fake_pcrs.items():
        try:
            raw = attestation.parse_pcr_hex(value)
            if len(raw) != 48:
                raise ValueError("fake PCRs are 48 bytes")
            pcrs[int(key)] = raw
        except ValueError as exc:
            problems.append(f"fake_pcrs.{key}: {exc}")
    if problems:
        raise ConfigError(problems)
    nsm = FakeNsm(pki, pcrs=pcrs, variant=settings.fake_variant)
    ctx.logger.warning("nitro_fake: using a FAKE NSM and test root; this enclave proves nothing")
    return NitroKeyProvider(
        settings, ctx, transport=nsm, root=pki.root_cert, allow_plain_http=True,
        default_credentials=("AKIDSWQOSFAKE", "fake-secret"),
    )
