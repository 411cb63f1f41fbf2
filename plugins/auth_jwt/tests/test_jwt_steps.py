"""The nine steps, one refusal at a time, and every unit-level case of the issue's bad-input list."""

from __future__ import annotations

import hashlib
import hmac
import json

import grpc
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from swqos_auth_jwt.jwt_auth import P256_N, JwtKeySettings
from swqos_auth_jwt.strict import b64url_decode, b64url_encode
from swqos_core.errors import Rejection

from .authjwt_helpers import (
    AUDIENCE,
    DROP,
    HEADER,
    ISSUER,
    NOW,
    PROBE_ISSUER,
    bearer,
    claims,
    client,
    compact,
    head,
    write_pub,
)


async def refused(auth, h, label: str, code=grpc.StatusCode.UNAUTHENTICATED, cl=None) -> Rejection:
    with pytest.raises(Rejection) as ei:
        await auth.authenticate(h, cl or client())
    assert ei.value.code == code, ei.value.reason
    assert ei.value.label == label, ei.value.reason
    if label.startswith("step"):
        assert ei.value.reason.startswith(f"jwt step {label[4]} (")
    return ei.value


async def test_valid_token_gives_trader_principal(env):
    auth = env.auth()
    p = await auth.authenticate(bearer(env.token()), client())
    assert (p.subject, p.role, p.authenticator, p.token_id, p.expires_at) == ("trader-1", "trader", "jwt", "jti-1",
                                                                                float(NOW + 300))


async def test_second_rotation_key_also_accepted(env):
    p = await env.auth().authenticate(bearer(env.token(env.k2, header={**HEADER, "kid": "k2"})), client())
    assert p.subject == "trader-1"


async def test_probe_key_set_gives_probe_role(env):
    tok = env.token(env.probe, header={**HEADER, "kid": "p1"}, iss=PROBE_ISSUER, sub="marketplace-probe")
    p = await env.auth().authenticate(bearer(tok), client())
    assert (p.role, p.subject) == ("probe", "marketplace-probe")


async def test_no_authorization_header_is_not_claimed(env):
    assert await env.auth().authenticate(head(), client()) is None


async def test_api_token_is_left_to_the_api_token_authenticator(env):
    assert await env.auth().authenticate(head("Bearer swqat_0123456789abcdef_" + "A" * 43), client()) is None


# --- step 1: envelope ---------------------------------------------------------------------------


async def test_step1_two_tokens(env):
    tok = env.token()
    await refused(env.auth(), head(f"Bearer {tok}", f"Bearer {tok}"), "step1_envelope")


async def test_step1_two_tokens_in_one_header(env):
    tok = env.token()
    await refused(env.auth(), head(f"Bearer {tok} {tok}"), "step1_envelope")


@pytest.mark.parametrize("value", ["Bearer ", "Bearer", "bearer x.y.z", "Basic dXNlcjpwYXNz", "Token abc.def.ghi"])
async def test_step1_not_one_bearer_token(env, value):
    await refused(env.auth(), head(value), "step1_envelope")


async def test_step1_8kb_token(env):
    tok = env.token(pad="x" * 8192)
    assert len(tok) > 8192
    r = await refused(env.auth(), bearer(tok), "step1_envelope")
    assert "longer" in r.reason


@pytest.mark.parametrize("bad", ["+", "/", "!", " ", "{", "\"", "%"])
async def test_step1_non_base64url_characters(env, bad):
    tok = env.token()
    h, c, s = tok.split(".")
    await refused(env.auth(), bearer(f"{h}.{c[:5]}{bad}{c[5:]}.{s}"), "step1_envelope")


async def test_step1_padding(env):
    tok = env.token()
    h, c, s = tok.split(".")
    padded = h + "=" * (-len(h) % 4 or 4)
    await refused(env.auth(), bearer(f"{padded}.{c}.{s}"), "step1_envelope")
    await refused(env.auth(), bearer(f"{h}.{c}.{s}=="), "step1_envelope")


async def test_step1_noncanonical_trailing_bits(env):
    tok = env.token()
    h, c, s = tok.split(".")
    assert len(s) % 4 == 2  # 64 bytes -> 86 chars, the last one carries 4 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = s[:-1] + alphabet[alphabet.index(s[-1]) | 1]  # same bytes, a non-zero unused bit
    assert twin != s
    await refused(env.auth(), bearer(f"{h}.{c}.{twin}"), "step1_envelope")


@pytest.mark.parametrize("parts", [2, 4, 5])
async def test_step1_wrong_number_of_parts(env, parts):
    segs = env.token().split(".")
    tok = ".".join((segs * 2)[:parts])
    await refused(env.auth(), bearer(tok), "step1_envelope")


async def test_step1_empty_part(env):
    h, c, _ = env.token().split(".")
    await refused(env.auth(), bearer(f"{h}.{c}."), "step1_envelope")


# --- step 2: header -------------------------------------------------------------------------------


@pytest.mark.parametrize("param,value", [
    ("jku", "https://evil.example/jwks.json"), ("x5u", "https://evil.example/cert.pem"),
    ("jwk", {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}), ("x5c", ["MIIB"]), ("crit", ["exp"]),
    ("zip", "DEF"), ("b64", False), ("cty", "JWT"), ("custom", 1),
])
async def test_step2_header_parameter_refused(env, param, value):
    tok = env.token(header={**HEADER, param: value})
    r = await refused(env.auth(), bearer(tok), "step2_header")
    assert param in r.reason or "unknown" in r.reason


async def test_step2_duplicate_header_key(env):
    raw = b'{"alg":"ES256","typ":"JWT","kid":"k1","kid":"k2"}'
    tok = compact(raw, claims(), env.k1)
    await refused(env.auth(), bearer(tok), "step2_header")


@pytest.mark.parametrize("raw", [b"[]", b"not json", b'"ES256"', b'{"alg":"ES256","typ":NaN}', b"\xff\xfe"])
async def test_step2_header_not_a_json_object(env, raw):
    await refused(env.auth(), bearer(compact(raw, claims(), env.k1)), "step2_header")


# --- step 3: alg and typ ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "es256", "ES384", "RS256", "HS256", "EdDSA", 1, None])
async def test_step3_alg_must_be_es256(env, alg):
    tok = env.token(header={**HEADER, "alg": alg})
    await refused(env.auth(), bearer(tok), "step3_alg")


async def test_step3_alg_none_with_empty_signature_is_refused(env):
    h = b64url_encode(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    c = b64url_encode(json.dumps(claims()).encode())
    await refused(env.auth(), bearer(f"{h}.{c}."), "step1_envelope")


async def test_step3_hs256_signed_with_the_public_key(env):
    pem = env.k1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    h = b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    c = b64url_encode(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{h}.{c}".encode(), hashlib.sha256).digest()
    await refused(env.auth(), bearer(f"{h}.{c}.{b64url_encode(mac)}"), "step3_alg")


async def test_step3_rs256_token(env):
    rkey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tok = pyjwt.encode(claims(), rkey, algorithm="RS256", headers={"kid": "k1"})
    await refused(env.auth(), bearer(tok), "step3_alg")


async def test_step3_es384_token(env):
    key384 = ec.generate_private_key(ec.SECP384R1())
    tok = pyjwt.encode(claims(), key384, algorithm="ES384", headers={"kid": "k1"})
    await refused(env.auth(), bearer(tok), "step3_alg")


@pytest.mark.parametrize("typ", ["at+jwt", "jwt", DROP])
async def test_step3_typ_must_match(env, typ):
    hdr = {k: v for k, v in HEADER.items() if not (k == "typ" and typ is DROP)}
    if typ is not DROP:
        hdr["typ"] = typ
    await refused(env.auth(), bearer(env.token(header=hdr)), "step3_alg")


async def test_step3_configured_typ(env):
    auth = env.auth(typ="swqos-access+jwt")
    await refused(auth, bearer(env.token()), "step3_alg")
    ok = env.token(header={**HEADER, "typ": "swqos-access+jwt"})
    assert (await auth.authenticate(bearer(ok), client())).subject == "trader-1"


# --- step 4: kid -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["../../../../dev/null", "/etc/passwd", "k1/../k1", "k1\u0000", "", "x" * 65, 7, DROP])
async def test_step4_malformed_kid(env, kid):
    hdr = {k: v for k, v in HEADER.items() if k != "kid"}
    if kid is not DROP:
        hdr["kid"] = kid
    await refused(env.auth(), bearer(env.token(header=hdr)), "step4_kid")


async def test_step4_unknown_kid(env):
    await refused(env.auth(), bearer(env.token(header={**HEADER, "kid": "k9"})), "step4_kid")


async def test_step4_revoked_kid(env):
    auth = env.auth()
    auth.revoke_key("k1")
    r = await refused(auth, bearer(env.token()), "step4_kid")
    assert "revoked" in r.reason
    assert auth.restore_key("k1")
    assert (await auth.authenticate(bearer(env.token()), client())).subject == "trader-1"


async def test_step4_key_validity_window(env):
    from datetime import UTC, datetime
    assert datetime.fromtimestamp(NOW + 3600, UTC).isoformat() == "2027-01-15T09:00:00+00:00"
    keys = {"k1": JwtKeySettings(env.tmp / "k1.pem", not_before=NOW, not_after="2027-01-15T09:00:00Z")}
    write_pub(env.tmp / "k1.pem", env.k1)
    assert (await env.auth(keys=keys).authenticate(bearer(env.token()), client())).subject == "trader-1"
    env.clock.now = NOW - 5
    r = await refused(env.auth(keys=keys), bearer(env.token(iat=NOW - 10, exp=NOW + 100)), "step4_kid")
    assert "not yet" in r.reason
    env.clock.now = NOW + 3600
    r = await refused(env.auth(keys=keys), bearer(env.token(iat=NOW + 3590, exp=NOW + 3700)), "step4_kid")
    assert "expired" in r.reason


async def test_step4_expired_kid(env):
    write_pub(env.tmp / "k1.pem", env.k1)
    keys = {"k1": JwtKeySettings(env.tmp / "k1.pem", not_after=NOW)}
    r = await refused(env.auth(keys=keys), bearer(env.token()), "step4_kid")
    assert "expired" in r.reason


# --- step 5: signature -----------------------------------------------------------------------------


def _with_sig(tok: str, sig: bytes) -> str:
    h, c, _ = tok.split(".")
    return f"{h}.{c}.{b64url_encode(sig)}"


async def test_step5_signed_by_an_unknown_key(env):
    await refused(env.auth(), bearer(env.token(env.stranger)), "step5_signature")


async def test_step5_all_zero_signature(env):
    await refused(env.auth(), bearer(_with_sig(env.token(), bytes(64))), "step5_signature")


@pytest.mark.parametrize("sig", [
    bytes(32) + b"\x01" * 32, b"\x01" * 32 + bytes(32),
    P256_N.to_bytes(32, "big") + b"\x01" * 32, b"\x01" * 32 + P256_N.to_bytes(32, "big"), b"\xff" * 64,
])
async def test_step5_r_or_s_out_of_range(env, sig):
    r = await refused(env.auth(), bearer(_with_sig(env.token(), sig)), "step5_signature")
    assert "range" in r.reason


@pytest.mark.parametrize("n", [63, 65, 72, 1])
async def test_step5_signature_length(env, n):
    await refused(env.auth(), bearer(_with_sig(env.token(), b"\x01" * n)), "step5_signature")


async def test_step5_der_signature_refused(env):
    from cryptography.hazmat.primitives import hashes
    tok = env.token()
    h, c, _ = tok.split(".")
    der = env.k1.sign(f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    await refused(env.auth(), bearer(f"{h}.{c}.{b64url_encode(der)}"), "step5_signature")


async def test_step5_tampered_claims(env):
    h, _, s = env.token().split(".")
    c = b64url_encode(json.dumps(claims(sub="admin")).encode())
    await refused(env.auth(), bearer(f"{h}.{c}.{s}"), "step5_signature")


def malleate(tok: str) -> str:
    h, c, s = tok.split(".")
    raw = b64url_decode(s)
    r, sv = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{h}.{c}.{b64url_encode(r + (P256_N - sv).to_bytes(32, 'big'))}"


async def test_step5_malleated_copy_is_the_same_token(env):
    # (r, n-s) verifies too; it is normalised to low s first, so it is the same token, not a second one.
    tok = env.token()
    twin = malleate(tok)
    assert twin != tok
    p = await env.auth().authenticate(bearer(twin), client())
    assert p.token_id == "jti-1"


def s_of(tok: str) -> int:
    return int.from_bytes(b64url_decode(tok.rsplit(".", 1)[1])[32:], "big")


def low_and_high(tok: str) -> tuple[str, str]:
    twin = malleate(tok)
    return (tok, twin) if s_of(tok) <= P256_N // 2 else (twin, tok)


async def test_step5_high_s_spelling_is_never_verified_or_cached_as_such(env):
    from swqos_auth_jwt.jwt_auth import low_s_spelling

    low, high = low_and_high(env.token())  # built from a real signature: one of the two is high
    assert s_of(high) > P256_N // 2 >= s_of(low)
    assert low_s_spelling(f"Bearer {high}") == f"Bearer {low}"
    assert low_s_spelling(f"Bearer {low}") == f"Bearer {low}"
    auth = env.auth()
    with pytest.raises(Rejection) as ei:  # the verifier itself refuses an unnormalised high s
        auth._verify(f"Bearer {high}", float(NOW + 10))
    assert ei.value.label == "step5_signature" and "high-s" in ei.value.reason
    assert len(auth.cache) == 0


@pytest.mark.parametrize("bad", ["Bearer a.b", "Bearer a.b." + "A" * 85, "Bearer a.b." + "A" * 85 + "=",
                                 "Bearer a.b." + "_" * 86])
def test_low_s_spelling_leaves_unparsable_values_to_the_steps(bad):
    from swqos_auth_jwt.jwt_auth import low_s_spelling

    assert low_s_spelling(bad) == bad


async def test_high_s_twin_of_a_revoked_token_is_refused_before_and_after_caching(env):
    auth = env.auth()
    low, high = low_and_high(env.token())
    auth.revoke_token("jti-1")
    await refused(auth, bearer(high), "step9_revocation")
    auth.restore_token("jti-1")
    await auth.authenticate(bearer(low), client())
    auth.revoke_token("jti-1")
    await refused(auth, bearer(high), "step9_revocation")
    assert list(auth.cache._d) == [f"Bearer {low}"]  # one entry for both spellings, revocation checked on it


async def test_malleated_copy_of_a_revoked_token_is_refused(env):
    auth = env.auth()
    tok = env.token()
    await auth.authenticate(bearer(tok), client())
    auth.revoke_token("jti-1")
    await refused(auth, bearer(tok), "step9_revocation")
    await refused(auth, bearer(malleate(tok)), "step9_revocation")


async def test_malleated_copy_of_a_revoked_subject_is_refused(env):
    auth = env.auth()
    auth.revoke_subject("trader-1")
    await refused(auth, bearer(malleate(env.token())), "step9_revocation", code=grpc.StatusCode.PERMISSION_DENIED)


# --- step 6: claims --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sub", "jti"])
@pytest.mark.parametrize("value", ["trader\n1", "trader-1\r", "tr\x00ader", "\x1b[31mtrader", "trader\x7f",
                                   "trader\t1", "trader 1", " trader-1", "tr\u00e5der", "\u202etrader",
                                   "trader\u200b", "tr\u0430der"])
async def test_step6_sub_and_jti_printable_ascii_only(env, name, value):
    r = await refused(env.auth(), bearer(env.token(**{name: value})), "step6_claims")
    assert "printable ASCII" in r.reason and value not in r.reason


async def test_step6_every_visible_ascii_character_is_allowed_in_sub(env):
    sub = "".join(chr(c) for c in range(0x21, 0x7F))
    p = await env.auth().authenticate(bearer(env.token(sub=sub)), client())
    assert p.subject == sub


async def test_step6_duplicate_sub_claim(env):
    body = json.dumps(claims())[:-1] + ',"sub":"admin"}'
    tok = compact(HEADER, body, env.k1)
    await refused(env.auth(), bearer(tok), "step6_claims")


@pytest.mark.parametrize("name", ["iss", "aud", "sub", "exp", "iat", "jti"])
async def test_step6_missing_required_claim(env, name):
    r = await refused(env.auth(), bearer(env.token(**{name: DROP})), "step6_claims")
    assert f"missing claim {name}" in r.reason


@pytest.mark.parametrize("name,value", [
    ("exp", str(NOW + 300)), ("exp", float(NOW + 300)), ("exp", True), ("exp", None), ("exp", 2**60),
    ("iat", "now"), ("nbf", "soon"), ("nbf", 1.5),
    ("sub", 12345), ("sub", ""), ("sub", ["trader-1"]), ("sub", "x" * 300), ("iss", None), ("jti", 7),
    ("aud", 1), ("aud", []), ("aud", [AUDIENCE, 2]), ("aud", [AUDIENCE] + ["a"] * 16),
])
async def test_step6_wrong_claim_types(env, name, value):
    await refused(env.auth(), bearer(env.token(**{name: value})), "step6_claims")


@pytest.mark.parametrize("raw", [b"[]", b"null", b'{"exp": Infinity}', b"{", b"\xc3\x28"])
async def test_step6_claims_not_a_json_object(env, raw):
    await refused(env.auth(), bearer(compact(HEADER, raw, env.k1)), "step6_claims")


# --- step 7: iss and aud ---------------------------------------------------------------------------


@pytest.mark.parametrize("iss", [ISSUER[:-1], ISSUER + "/", ISSUER + ".evil.example", "https://MARKET.example",
                                 PROBE_ISSUER])
async def test_step7_iss_prefix_or_superstring(env, iss):
    await refused(env.auth(), bearer(env.token(iss=iss)), "step7_iss_aud")


async def test_step7_probe_key_cannot_vouch_for_the_trader_issuer(env):
    tok = env.token(env.probe, header={**HEADER, "kid": "p1"})  # iss = trader issuer
    await refused(env.auth(), bearer(tok), "step7_iss_aud")


@pytest.mark.parametrize("aud", [AUDIENCE[:-1], AUDIENCE + "x", "validator:", AUDIENCE.upper(),
                                 "validator:9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", [AUDIENCE + " "],
                                 ["validator:other", "x" + AUDIENCE]])
async def test_step7_wrong_audience(env, aud):
    await refused(env.auth(), bearer(env.token(aud=aud)), "step7_iss_aud")


async def test_step7_audience_list_containing_ours(env):
    p = await env.auth().authenticate(bearer(env.token(aud=["validator:other", AUDIENCE])), client())
    assert p.subject == "trader-1"


# --- step 8: time ----------------------------------------------------------------------------------


async def test_step8_expired(env):
    env.clock.now = NOW + 300 + 31
    await refused(env.auth(), bearer(env.token()), "step8_time")


async def test_step8_leeway(env):
    env.clock.now = NOW + 300 + 29
    assert (await env.auth().authenticate(bearer(env.token()), client())).subject == "trader-1"
    await refused(env.auth(leeway_seconds=0), bearer(env.token()), "step8_time")


async def test_step8_nbf_in_the_future(env):
    await refused(env.auth(), bearer(env.token(nbf=NOW + 100)), "step8_time")
    assert (await env.auth().authenticate(bearer(env.token(nbf=NOW + 30)), client())).subject == "trader-1"


async def test_step8_iat_in_the_future(env):
    await refused(env.auth(), bearer(env.token(iat=NOW + 60, exp=NOW + 300)), "step8_time")


async def test_step8_lifetime_above_bound(env):
    r = await refused(env.auth(), bearer(env.token(exp=NOW + 901)), "step8_time")
    assert "lifetime" in r.reason
    assert (await env.auth().authenticate(bearer(env.token(exp=NOW + 900)), client())).subject == "trader-1"
    await refused(env.auth(max_lifetime_seconds=120), bearer(env.token()), "step8_time")


async def test_step8_exp_not_after_iat(env):
    await refused(env.auth(), bearer(env.token(exp=NOW)), "step8_time")


# --- step 9: revocation ----------------------------------------------------------------------------


async def test_step9_revoked_subject_and_restore(env):
    auth = env.auth()
    auth.revoke_subject("trader-1")
    r = await refused(auth, bearer(env.token()), "step9_revocation", code=grpc.StatusCode.PERMISSION_DENIED)
    assert "subject" in r.reason
    assert auth.restore_subject("trader-1")
    assert (await auth.authenticate(bearer(env.token()), client())).subject == "trader-1"


async def test_step9_revoked_jti(env):
    auth = env.auth()
    auth.revoke_token("jti-1")
    await refused(auth, bearer(env.token()), "step9_revocation")
    assert (await auth.authenticate(bearer(env.token(jti="jti-2")), client())).token_id == "jti-2"


# --- order: cheap structure before the signature ---------------------------------------------------


async def test_steps_run_in_order(env):
    # a token wrong at steps 3, 5 and 7 at once is refused at step 3
    tok = env.token(env.stranger, header={**HEADER, "alg": "ES384"}, iss="x")
    await refused(env.auth(), bearer(tok), "step3_alg")
    # wrong at 5 and 6: signature first, claims are never parsed from an unverified token
    tok = compact(HEADER, b'{"sub":1,"sub":2}', env.stranger)
    await refused(env.auth(), bearer(tok), "step5_signature")


async def test_reasons_never_echo_the_token(env):
    tok = env.token(iss="attacker-controlled-issuer-string")
    r = await refused(env.auth(), bearer(tok), "step7_iss_aud")
    assert "attacker" not in r.reason and tok[:20] not in r.reason


async def test_unexpected_exception_is_a_refusal(env, monkeypatch):
    auth = env.auth()

    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(auth, "_step6_claims", boom)
    await refused(auth, bearer(env.token()), "error")
