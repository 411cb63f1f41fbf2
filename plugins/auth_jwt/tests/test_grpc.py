"""The issue's bad-input list through the real gRPC server (TLS, proxy, enclave process): every
refusal has its status code, and the enclave's own signature counter does not move."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time

import grpc
import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from swqos_auth_jwt import issuer
from swqos_auth_jwt.jwt_auth import P256_N
from swqos_auth_jwt.strict import b64url_decode, b64url_encode
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack

from .authjwt_helpers import compact, write_pub

U, P, R = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED
PROBE_ISSUER = "marketplace-probe"
_ips = (f"198.18.{i // 250}.{i % 250 + 1}" for i in itertools.count())


def malleate(tok: str) -> str:
    h, c, s = tok.split(".")
    raw = b64url_decode(s)
    return f"{h}.{c}.{b64url_encode(raw[:32] + (P256_N - int.from_bytes(raw[32:], 'big')).to_bytes(32, 'big'))}"


def with_sig(tok: str, sig: bytes) -> str:
    h, c, _ = tok.split(".")
    return f"{h}.{c}.{b64url_encode(sig)}"


async def test_bad_input_through_the_real_server(tmp_path):
    probe_key = ec.generate_private_key(ec.SECP256R1())
    stranger = ec.generate_private_key(ec.SECP256R1())
    write_pub(tmp_path / "probe.pub.pem", probe_key)
    (tmp_path / "revoked.json").write_text(json.dumps(
        {"sub": ["trader-revoked"], "jti": ["jti-revoked"], "kid": ["dev-revoked"]}))
    (tmp_path / "allow.json").write_text(json.dumps({"trader-fenced": ["192.0.2.0/24"]}))
    proxy = {
        "swqos": {"plugins": ["auth_jwt", "testing"], "allow_test_plugins": True},
        "pipeline": {"client_ip": ["test_header"]},
        "layers": {"auth": {"jwt": {
            "keys": {"dev-expired": {"public_key": "issuer.pub.pem", "not_after": 1_000_000_000},
                     "dev-revoked": {"public_key": "issuer.pub.pem"}},
            "probe_issuer": PROBE_ISSUER,
            "probe_keys": {"probe-1": {"public_key": str(tmp_path / "probe.pub.pem")}},
            "revocation_file": str(tmp_path / "revoked.json"),
            "allowlist_file": str(tmp_path / "allow.json"),
        }}},
    }
    async with running_stack(tmp_path, proxy=proxy) as stack:
        key = load_pem_private_key((stack.dev_dir / "issuer.key").read_bytes(), None)
        aud = issuer.dev_audience(stack.dev_dir)
        now = int(time.time())

        def tok(sub="trader-1", *, kid="dev-1", k=key, iss="swqos-dev", header=None, **claims):
            base = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + 300, "jti": f"j-{sub}-{now}", **claims}
            base = {name: v for name, v in base.items() if v is not None}  # None: leave the claim out
            return compact(header or {"alg": "ES256", "typ": "JWT", "kid": kid}, base, k)

        good = tok()
        h, c, s = good.split(".")
        pem_pub = (stack.dev_dir / "issuer.pub.pem").read_bytes()
        hs_h = b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "dev-1"}).encode())
        hs = f"{hs_h}.{c}.{b64url_encode(hmac.new(pem_pub, f'{hs_h}.{c}'.encode(), hashlib.sha256).digest())}"
        revoked_jti = tok(jti="jti-revoked")

        none_unsigned = b64url_encode(b'{"alg":"none","typ":"JWT"}') + f".{c}."
        dup_header = compact(b'{"alg":"ES256","typ":"JWT","kid":"dev-1","kid":"dev-1"}', b64url_decode(c), key)
        dup_sub = compact({"alg": "ES256", "typ": "JWT", "kid": "dev-1"},
                          b64url_decode(c)[:-1] + b',"sub":"admin"}', key)
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rs256 = pyjwt.encode({"sub": "x"}, rsa_key, algorithm="RS256", headers={"kid": "dev-1"})
        es384 = pyjwt.encode({"sub": "x"}, ec.generate_private_key(ec.SECP384R1()), algorithm="ES384",
                             headers={"kid": "dev-1"})
        other_aud = "validator:9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"

        def hdr(**extra):
            return {"alg": "ES256", "typ": "JWT", "kid": "dev-1", **extra}

        # (case, authorization values or None, expected status)
        cases: list[tuple[str, list[str] | None, grpc.StatusCode]] = [
            ("no token", None, U),
            ("two tokens", [f"Bearer {good}", f"Bearer {good}"], U),
            ("two tokens in one header", [f"Bearer {good} {good}"], U),
            ("empty token", ["Bearer "], U),
            ("8 KB token", [f"Bearer {tok(pad='x' * 6000)}"], U),
            ("non-base64url characters", [f"Bearer {h}.{c[:9]}+/{c[11:]}.{s}"], U),
            ("padding", [f"Bearer {h}.{c}.{s}=="], U),
            ("two parts", [f"Bearer {h}.{c}"], U),
            ("four parts", [f"Bearer {h}.{c}.{s}.{s}"], U),
            *[(f"alg {a}", [f"Bearer {tok(header=hdr(alg=a))}"], U) for a in ("none", "None", "NONE")],
            ("alg none unsigned", [f"Bearer {none_unsigned}"], U),
            ("HS256 with the public key as secret", [f"Bearer {hs}"], U),
            ("RS256", [f"Bearer {rs256}"], U),
            ("ES384", [f"Bearer {es384}"], U),
            ("ES256 by an unknown key", [f"Bearer {tok(k=stranger)}"], U),
            ("unknown kid", [f"Bearer {tok(kid='dev-9')}"], U),
            ("revoked kid", [f"Bearer {tok(kid='dev-revoked')}"], U),
            ("expired kid", [f"Bearer {tok(kid='dev-expired')}"], U),
            ("all-zero signature", [f"Bearer {with_sig(good, bytes(64))}"], U),
            ("malleated copy of a revoked token", [f"Bearer {malleate(revoked_jti)}"], U),
            ("kid path traversal", [f"Bearer {tok(kid='../../../../dev/null')}"], U),
            *[(f"{p} header", [f"Bearer {tok(header=hdr(**{p: v}))}"], U) for p, v in
              [("jku", "https://evil.example/k"), ("x5u", "https://evil.example/c"),
               ("jwk", {"kty": "EC"}), ("x5c", ["MIIB"]), ("crit", ["exp"])]],
            ("duplicate header key", [f"Bearer {dup_header}"], U),
            ("duplicate sub claim", [f"Bearer {dup_sub}"], U),
            *[(f"missing {n}", [f"Bearer {tok(**{n: None})}"], U) for n in ("iss", "aud", "sub", "exp", "iat", "jti")],
            ("string exp", [f"Bearer {tok(exp=str(now + 300))}"], U),
            ("numeric sub", [f"Bearer {compact(hdr(), {**json.loads(b64url_decode(c)), 'sub': 42}, key)}"], U),
            ("expired", [f"Bearer {tok(iat=now - 400, exp=now - 100)}"], U),
            ("nbf in the future", [f"Bearer {tok(nbf=now + 120)}"], U),
            ("iat in the future", [f"Bearer {tok(iat=now + 120, exp=now + 400)}"], U),
            ("lifetime above the bound", [f"Bearer {tok(exp=now + 901)}"], U),
            ("iss prefix", [f"Bearer {tok(iss='swqos-de')}"], U),
            ("iss superstring", [f"Bearer {tok(iss='swqos-dev2')}"], U),
            ("aud prefix", [f"Bearer {tok(aud=aud[:-3])}"], U),
            ("aud superstring", [f"Bearer {tok(aud=aud + 'x')}"], U),
            ("aud of another validator", [f"Bearer {tok(aud=other_aud)}"], U),
            ("revoked sub", [f"Bearer {tok('trader-revoked')}"], P),
            ("revoked jti", [f"Bearer {revoked_jti}"], U),
            ("outside the trader's allowlist", [f"Bearer {tok('trader-fenced')}"], P),
            ("probe token on SignCertificateVerify",
             [f"Bearer {tok('probe', kid='probe-1', k=probe_key, iss=PROBE_ISSUER)}"], P),
        ]
        before = await stack.signatures_made()
        for name, auth, expected in cases:
            md = [("x-test-client-ip", next(_ips))] + [("authorization", a) for a in auth or []]
            r = await stack.sign(valid_cv(), token=None, metadata=md)
            assert r.code == expected, f"{name}: got {r.code} {r.details!r}"
            if expected == U and name != "no token":
                assert r.details.startswith("jwt step "), f"{name}: {r.details!r}"
            assert await stack.signatures_made() == before, name

        # the probe may read the identity; the fenced trader may sign from inside its list
        probe = tok("probe", kid="probe-1", k=probe_key, iss=PROBE_ISSUER)
        r = await stack.identity(b"n" * 16, token=probe, metadata=[("x-test-client-ip", next(_ips))])
        assert r.code == grpc.StatusCode.OK, r.details
        assert await stack.signatures_made() == before

        # brute force: the 6th and 21st failed attempts from one address ...
        bad = f"Bearer {tok(k=stranger)}"
        one = [("x-test-client-ip", "203.0.113.77"), ("authorization", bad)]
        codes = [(await stack.sign(valid_cv(), token=None, metadata=one)) for _ in range(21)]
        assert [r.code for r in codes[:5]] == [U] * 5
        assert codes[5].code == R and float(codes[5].trailing["retry-after"]) > 0
        assert codes[20].code == P
        r = await stack.sign(valid_cv(), token=good, metadata=[("x-test-client-ip", "203.0.113.77")])
        assert r.code == P  # a valid token does not lift the ban
        # ... and from many addresses of one /64
        codes = [(await stack.sign(valid_cv(), token=None,
                                   metadata=[("x-test-client-ip", f"2001:db8:7:8::{i:x}"), ("authorization", bad)]))
                 for i in range(1, 22)]
        assert [r.code for r in codes[:5]] == [U] * 5
        assert codes[5].code == R and codes[20].code == P
        assert await stack.signatures_made() == before

        # control: the same server does sign for a valid token, so the counter above is live
        for ip, sub in (("198.19.0.1", "trader-1"), ("192.0.2.10", "trader-fenced")):
            r = await stack.sign(valid_cv(), token=tok(sub, jti=f"ok-{sub}"), metadata=[("x-test-client-ip", ip)])
            assert r.code == grpc.StatusCode.OK, r.details
        assert await stack.signatures_made() == before + 2


async def test_revocation_file_edit_reaches_a_running_server(tmp_path):
    rev = tmp_path / "revoked.json"
    rev.write_text("{}")
    proxy = {"layers": {"auth": {"jwt": {"revocation_file": str(rev), "reload_interval_seconds": 0.05}}}}
    async with running_stack(tmp_path, proxy=proxy) as stack:
        good = stack.token("trader-2")
        assert (await stack.sign(valid_cv(), token=good)).code == grpc.StatusCode.OK
        before = await stack.signatures_made()
        tmp = rev.with_suffix(".new")
        tmp.write_text(json.dumps({"sub": ["trader-2"]}))
        tmp.replace(rev)
        time.sleep(0.1)
        r = await stack.sign(valid_cv(), token=good)  # cached token, its trader revoked by the file
        assert r.code == grpc.StatusCode.PERMISSION_DENIED and "revoked" in r.details
        assert await stack.signatures_made() == before


async def test_api_tokens_through_the_real_server(tmp_path):
    from swqos_auth_jwt.api_tokens import create_token

    store = tmp_path / "tokens.json"
    trader, _ = create_token(store, "bot-1", "trader")
    admin, _ = create_token(store, "ops", "admin")
    # Argon2id is ~20 ms alone but shares two cores with the whole suite here: a generous deadline
    # keeps this test about status codes, not speed.
    proxy = {"proxy": {"deadline_ms": 5000}, "pipeline": {"auth": ["jwt", "api_token"]},
             "layers": {"auth": {"api_token": {"store": str(store), "accept_roles": ["trader"]}}}}
    async with running_stack(tmp_path, proxy=proxy) as stack:
        before = await stack.signatures_made()
        wrong = trader[:-4] + ("AAAA" if trader[-4:] != "AAAA" else "BBBB")
        for tok, expected in [(wrong, U), (trader + "x", U), (admin, P), (f"swqat_{'0' * 16}_{trader[-43:]}", U)]:
            r = await stack.sign(valid_cv(), token=tok)
            assert r.code == expected, r.details
        assert await stack.signatures_made() == before
        r = await stack.sign(valid_cv(), token=trader)
        assert r.code == grpc.StatusCode.OK, r.details
        assert (await stack.sign(valid_cv(), token=stack.token())).code == grpc.StatusCode.OK  # jwt still works
        assert await stack.signatures_made() == before + 2
