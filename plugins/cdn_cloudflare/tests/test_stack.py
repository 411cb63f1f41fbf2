"""The cloudflare resolver in the real host-proxy: real gRPC over TLS 1.3, the real pipeline, the
enclave as a child process. The test connects from 127.0.0.1; marking 127.0.0.0/8 as an extra
trusted edge makes the test client "Cloudflare"."""

import grpc

from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack


def cloudflare(**settings):
    return {
        "swqos": {"plugins": ["auth_jwt", "cdn_cloudflare"]},
        "pipeline": {"client_ip": ["cloudflare"]},
        "layers": {"client_ip": {"cloudflare": settings}},
    }


def observe(stack):
    decisions = []
    stack.proxy.pipeline.observers.append(decisions.append)
    return decisions


async def test_client_address_comes_from_the_header_when_the_peer_is_an_edge(tmp_path):
    async with running_stack(tmp_path, proxy=cloudflare(extra_trusted_ranges=["127.0.0.0/8"])) as stack:
        decisions = observe(stack)
        r = await stack.sign(valid_cv(), metadata=[("cf-connecting-ip", "81.2.69.7")])
        assert r.code == grpc.StatusCode.OK, r.details
        assert decisions[-1].client == "81.2.69.7"
        assert await stack.signatures_made() == 1


async def test_bad_headers_from_an_edge_are_refused_and_nothing_is_signed(tmp_path):
    async with running_stack(tmp_path, proxy=cloudflare(extra_trusted_ranges=["127.0.0.0/8"])) as stack:
        before = await stack.signatures_made()
        cases = {
            "missing": ([], grpc.StatusCode.INVALID_ARGUMENT),
            "garbage": ([("cf-connecting-ip", "not-an-ip")], grpc.StatusCode.INVALID_ARGUMENT),
            "two values": ([("cf-connecting-ip", "81.2.69.7, 81.2.69.8")], grpc.StatusCode.INVALID_ARGUMENT),
            "repeated": ([("cf-connecting-ip", "81.2.69.7"), ("cf-connecting-ip", "81.2.69.8")],
                         grpc.StatusCode.INVALID_ARGUMENT),
            "cloudflare itself": ([("cf-connecting-ip", "2a06:98c0:3600::103")], grpc.StatusCode.PERMISSION_DENIED),
        }
        for what, (md, code) in cases.items():
            r = await stack.sign(valid_cv(), metadata=md)
            assert r.code == code, (what, r.code, r.details)
        assert await stack.signatures_made() == before


async def test_spoofed_header_from_a_non_edge_is_refused_with_require_cdn(tmp_path):
    async with running_stack(tmp_path, proxy=cloudflare()) as stack:  # 127.0.0.1 is no Cloudflare edge
        before = await stack.signatures_made()
        decisions = observe(stack)
        r = await stack.sign(valid_cv(), metadata=[("cf-connecting-ip", "81.2.69.7")])
        assert r.code == grpc.StatusCode.PERMISSION_DENIED
        assert "Cloudflare" in r.details
        assert decisions[-1].stage == "client_ip"
        r = await stack.identity(nonce=b"n" * 16)
        assert r.code == grpc.StatusCode.PERMISSION_DENIED
        assert await stack.signatures_made() == before


async def test_spoofed_header_from_a_non_edge_is_ignored_without_require_cdn(tmp_path):
    async with running_stack(tmp_path, proxy=cloudflare(require_cdn=False)) as stack:
        decisions = observe(stack)
        r = await stack.sign(valid_cv(), metadata=[("cf-connecting-ip", "81.2.69.7"),
                                                   ("x-forwarded-for", "81.2.69.9")])
        assert r.code == grpc.StatusCode.OK, r.details
        assert decisions[-1].client == "127.0.0.1"  # the peer, never the forged header


async def test_non_global_client_addresses_are_refused_and_nothing_is_signed(tmp_path):
    """Issue 13 item 7 through the real stack: a loopback "edge" naming private, loopback,
    documentation, broadcast or IPv6-spelled private clients gets PERMISSION_DENIED at client_ip."""
    async with running_stack(tmp_path, proxy=cloudflare(extra_trusted_ranges=["127.0.0.0/8"])) as stack:
        before = await stack.signatures_made()
        decisions = observe(stack)
        # (127.0.0.0/8 is the trusted "edge" here, so loopback is tried as ::1)
        cases = {"10.0.0.1": "private", "::1": "loopback", "198.51.100.7": "documentation",
                 "255.255.255.255": "broadcast", "169.254.0.9": "link_local", "::10.0.0.1": "private",
                 "2002:a00:1::1": "private", "64:ff9b::192.168.0.1": "private", "fd00::1": "private"}
        for value, kind in cases.items():
            r = await stack.sign(valid_cv(), metadata=[("cf-connecting-ip", value)])
            assert r.code == grpc.StatusCode.PERMISSION_DENIED, (value, r.code, r.details)
            assert f"({kind})" in r.details, (value, r.details)
            assert decisions[-1].stage == "client_ip" and decisions[-1].label == f"cloudflare_client_{kind}"
        assert await stack.signatures_made() == before


async def test_ipv6_spellings_of_a_global_client_count_as_its_ipv4(tmp_path):
    async with running_stack(tmp_path, proxy=cloudflare(extra_trusted_ranges=["127.0.0.0/8"])) as stack:
        decisions = observe(stack)
        for value in ("::ffff:81.2.69.7", "::81.2.69.7", "2002:5102:4507::1", "64:ff9b::81.2.69.7"):
            r = await stack.sign(valid_cv(), metadata=[("cf-connecting-ip", value)])
            assert r.code == grpc.StatusCode.OK, (value, r.details)
            assert decisions[-1].client == "81.2.69.7", value


async def test_allow_non_global_is_for_staging(tmp_path):
    staging = cloudflare(extra_trusted_ranges=["127.0.0.0/8"], allow_non_global=True)
    async with running_stack(tmp_path, proxy=staging) as stack:
        decisions = observe(stack)
        r = await stack.sign(valid_cv(), metadata=[("cf-connecting-ip", "10.0.0.1")])
        assert r.code == grpc.StatusCode.OK, r.details
        assert decisions[-1].client == "10.0.0.1"
        before = await stack.signatures_made()
        r = await stack.sign(valid_cv(), metadata=[("cf-connecting-ip", "255.255.255.255")])  # never one client
        assert r.code == grpc.StatusCode.PERMISSION_DENIED and "(broadcast)" in r.details
        assert await stack.signatures_made() == before
