"""Rough per-call costs of the authenticators on this machine (not a test; the benchmark
harness owns speed). Run: .venv/bin/python plugins/auth_jwt/tools/measure.py"""

from __future__ import annotations

import asyncio
import ipaddress
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator, ApiTokenSettings, create_token
from swqos_auth_jwt.issuer import mint
from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtKeySettings, JwtSettings
from swqos_core.layers import ClientAddress, RequestHead


def head(token: str) -> RequestHead:
    return RequestHead("SignCertificateVerify", "ipv4:127.0.0.1:1", (("authorization", f"Bearer {token}"),))


async def per_call(fn, n: int) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            await fn()
        runs.append((time.perf_counter() - t) / n)
    return statistics.median(runs)


async def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "k.pem").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    auth = JwtAuthenticator(JwtSettings(issuer="i", audience="a", keys={"k": JwtKeySettings(tmp / "k.pem")}))
    client = ClientAddress(ipaddress.ip_address("127.0.0.1"), "peer", "ipv4:127.0.0.1:1")
    tok = mint(key, "k", "i", "a", "trader-1", 300)
    h = head(tok)

    async def uncached():
        auth.cache.clear()
        await auth.authenticate(h, client)

    async def cached():
        await auth.authenticate(h, client)

    print(f"jwt uncached (nine steps, ES256 verify): {await per_call(uncached, 2000) * 1e6:8.1f} us")
    print(f"jwt cached (revocation + allowlist):     {await per_call(cached, 20000) * 1e6:8.1f} us")
    token, _ = create_token(tmp / "t.json", "ops", "admin")
    api = ApiTokenAuthenticator(ApiTokenSettings(store=tmp / "t.json"))
    ah = head(token)

    async def api_uncached():
        api.cache.clear()
        await api.authenticate(ah, client)

    async def api_cached():
        await api.authenticate(ah, client)

    print(f"api token uncached (Argon2id m=19MiB t=2 p=1, in a thread): {await per_call(api_uncached, 20) * 1e3:6.1f} ms")
    print(f"api token cached (HMAC-SHA256 key):     {await per_call(api_cached, 20000) * 1e6:8.1f} us")


if __name__ == "__main__":
    asyncio.run(main())
