"""The whole boot: fake NSM → real boto3 → fake KMS → CMS unwrap → key check, and every refusal."""

from __future__ import annotations

import base64
import socket

import pytest
from botocore.exceptions import ClientError

from swqos_core import config as core_config
from swqos_core import plugins as core_plugins
from swqos_core.errors import ConfigError
from swqos_kms_nitro import attestation, cms
from swqos_kms_nitro.cli import dev_setup
from swqos_kms_nitro.fake_nsm import default_pcrs
from swqos_kms_nitro.provider import NitroKeySettings, make_nitro

from .kmsnitro_helpers import Sealed, approved_policy, build_ctx, kms_client


def test_boot_unseals_the_expected_key(sealed):
    provider = sealed.provider()
    material = provider.load()
    assert bytes(material.seed) == sealed.seed
    assert material.origin == f"kms:{sealed.key.arn}"
    ops = [op for op, _ in sealed.kms.calls]
    assert ops[-1] == "Decrypt"
    request = sealed.kms.calls[-1][1]
    assert request["Recipient"]["KeyEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert request["EncryptionContext"] == {"validator": sealed.validator}
    # The document sent to KMS binds an RSA-2048 SPKI (294 bytes DER).
    doc = attestation.verify(base64.b64decode(request["Recipient"]["AttestationDocument"]), root=sealed.kms.root)
    assert doc.public_key is not None and len(doc.public_key) == 294
    assert provider.measurement() == default_pcrs()[0].hex()


def test_identity_attestation_binds_key_and_nonce(sealed):
    provider = sealed.provider()
    provider.load()
    doc = provider.attest(sealed.public_key, b"caller-nonce")
    checked = attestation.verify_identity(doc, sealed.public_key, b"caller-nonce", root=sealed.kms.root)
    assert checked.user_data == attestation.IDENTITY_USER_DATA
    with pytest.raises(attestation.AttestationError):
        attestation.verify_identity(doc, sealed.public_key, b"other-nonce", root=sealed.kms.root)


def refuses(provider, match: str) -> ConfigError:
    with pytest.raises(ConfigError, match=match) as info:
        provider.load()
    return info.value


def test_kms_unreachable(sealed):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    refuses(sealed.provider(endpoint_url=f"http://127.0.0.1:{port}", connect_timeout=0.5), "KMS unreachable at")


def test_access_denied_when_pcrs_do_not_match_the_policy(fake_kms, tmp_path, fake_nsm_dir):
    other = {i: bytes([i + 1]) * 48 for i in range(16)}
    s = Sealed(fake_kms, tmp_path, fake_nsm_dir, key_policy=approved_policy(pcrs=other))
    err = refuses(s.provider(), "KMS Decrypt refused: AccessDeniedException")
    assert "PCRs match the key policy" in str(err)


def test_pcr_mismatch_caught_by_the_self_check(sealed):
    refuses(sealed.provider(expected_pcrs={"0": ["ab" * 48]}), "PCR0 does not match")
    assert not any(op == "Decrypt" for op, _ in sealed.kms.calls)  # refused before asking KMS


def test_debug_mode_enclave_refused(sealed):
    refuses(sealed.provider(fake_variant="debug"), "debug mode")


def test_expired_attestation_leaf_refused(sealed):
    refuses(sealed.provider(fake_variant="expired"), "own attestation document is refused")


def test_fake_kms_denies_debug_documents_by_policy(sealed):
    # Even if the self-check were skipped, KMS's policy (non-zero PCRs) denies a debug enclave.
    provider = sealed.provider(fake_variant="debug")
    provider._attest_for_kms = lambda spki: provider.nsm.attestation(public_key=spki)  # bypass the self-check
    refuses(provider, "AccessDeniedException")


def _replace_envelope(**build_kwargs):
    def tamper(response, plaintext, recipient_key):
        response["CiphertextForRecipient"] = base64.b64encode(
            cms.build_envelope(plaintext, recipient_key, **build_kwargs)).decode()
        return response
    return tamper


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"recipients": 2}, "2 recipients"),
    ({"key_transport": "pkcs1v15"}, "expected rsaes_oaep"),
    ({"content_cipher": "aes128_cbc"}, "expected aes256_cbc"),
    ({"corrupt_padding": True}, "decryption failed"),
])
def test_malformed_envelopes_stop_the_boot(sealed, kwargs, match):
    sealed.kms.tamper = _replace_envelope(**kwargs)
    refuses(sealed.provider(), match)


def test_trailing_garbage_stops_the_boot(sealed):
    def tamper(response, plaintext, key):
        blob = base64.b64decode(response["CiphertextForRecipient"]) + b"\x00\x00junk"
        response["CiphertextForRecipient"] = base64.b64encode(blob).decode()
        return response
    sealed.kms.tamper = tamper
    refuses(sealed.provider(), "trailing bytes")


def test_plaintext_in_the_response_is_refused(sealed):
    def tamper(response, plaintext, key):
        response["Plaintext"] = base64.b64encode(plaintext).decode()
        return response
    sealed.kms.tamper = tamper
    refuses(sealed.provider(), "KMS answered with Plaintext")


def test_response_without_envelope_refused(sealed):
    def tamper(response, plaintext, key):
        response.pop("CiphertextForRecipient")
        return response
    sealed.kms.tamper = tamper
    refuses(sealed.provider(), "no CiphertextForRecipient")


def test_forged_envelope_with_another_key_refused(sealed):
    # The parent sees the RSA key in the document and builds a valid envelope for its own seed.
    def tamper(response, plaintext, key):
        response["CiphertextForRecipient"] = base64.b64encode(cms.build_envelope(b"\x42" * 32, key)).decode()
        return response
    sealed.kms.tamper = tamper
    refuses(sealed.provider(), "does not match expected_public_key")


def test_forged_envelope_with_wrong_length_refused(sealed):
    sealed.kms.tamper = lambda r, p, k: r | {
        "CiphertextForRecipient": base64.b64encode(cms.build_envelope(p + p, k)).decode()}
    refuses(sealed.provider(), "expected a 32-byte Ed25519 seed")


def test_wrong_expected_public_key_refused(sealed):
    # Another validator's key: the context no longer matches what was sealed, KMS says no.
    other = "11111111111111111111111111111112"
    from swqos_core.identity import from_base58, to_base58
    other = to_base58(from_base58(other))
    # The key policy pins validator=<sealed key> (AccessDenied); without it the AAD differs (InvalidCiphertext).
    refuses(sealed.provider(expected_public_key=other), "AccessDeniedException|InvalidCiphertextException")


def test_encryption_context_differs(sealed):
    refuses(sealed.provider(encryption_context={"cluster": "mainnet"}), "EncryptionContext differs")


def test_encryption_context_cannot_override_validator(sealed):
    with pytest.raises(ConfigError, match=r"encryption_context\.validator"):
        sealed.provider(encryption_context={"validator": "someone-else"})


def test_wrong_key_id(sealed):
    other = sealed.kms.create_key(approved_policy())
    refuses(sealed.provider(key_id=other.arn), "IncorrectKeyException")


def test_missing_ciphertext_file(sealed, tmp_path):
    refuses(sealed.provider(ciphertext_file=tmp_path / "nope"), "cannot read ciphertext_file")


def test_plain_decrypt_without_recipient_is_denied_by_the_policy(sealed):
    # What the parent instance (holding the role credentials) would try: no Recipient, no attestation.
    with pytest.raises(ClientError, match="AccessDenied"):
        kms_client(sealed.kms).decrypt(CiphertextBlob=sealed.ciphertext_file.read_bytes(),
                                       EncryptionContext={"validator": sealed.validator})


def test_nitro_provider_requires_https_and_a_device(tmp_path, sealed):
    settings = NitroKeySettings(expected_public_key=sealed.validator, key_id="k", region="eu-west-1",
                                ciphertext_file=sealed.ciphertext_file, endpoint_url="http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="https"):
        make_nitro(settings, build_ctx())
    settings = NitroKeySettings(expected_public_key=sealed.validator, key_id="k", region="eu-west-1",
                                ciphertext_file=sealed.ciphertext_file, nsm_device=tmp_path / "nsm")
    provider = make_nitro(settings, build_ctx())
    assert provider.endpoint_url == "https://kms.eu-west-1.amazonaws.com"
    with pytest.raises(ConfigError, match="cannot get an attestation document: NSM Unavailable"):
        provider.load()


def test_nitro_requires_expected_public_key(tmp_path):
    settings = NitroKeySettings(expected_public_key="not-base58-0OIl", key_id="k", region="eu-west-1",
                                ciphertext_file=tmp_path / "x")
    with pytest.raises(ConfigError, match="expected_public_key"):
        make_nitro(settings, build_ctx())


def test_vsock_forwarding_needs_the_kms_name_on_loopback(sealed):
    provider = sealed.provider(endpoint_url="http://kms.invalid:8443", vsock_proxy_port=8000)
    refuses(provider, "/etc/hosts")


# --- through the TOML, as a user selects it ---------------------------------------------------


def test_dev_setup_boots_from_its_toml(tmp_path):
    setup = dev_setup(tmp_path / "dev")
    try:
        app = core_plugins.build_app(core_config.load(setup.enclave_config))
        provider = app.one("key_provider")
        material = provider.load()
        from swqos_core.identity import to_base58
        from swqos_kms_nitro.cli import public_of
        assert to_base58(public_of(material.seed)) == setup.public_key
    finally:
        setup.kms.stop()


def test_fake_provider_needs_allow_test_plugins(tmp_path):
    setup = dev_setup(tmp_path / "dev")
    try:
        text = setup.enclave_config.read_text().replace("allow_test_plugins = true", "allow_test_plugins = false")
        setup.enclave_config.write_text(text)
        with pytest.raises(ConfigError, match="'nitro_fake' is a test implementation"):
            core_plugins.build_app(core_config.load(setup.enclave_config))
    finally:
        setup.kms.stop()
