"""The cloudfront resolver in the real host-proxy (127.0.0.0/8 marked as a trusted edge)."""

import grpc

from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack


def cloudfront(**settings):
    return {"swqos": {"plugins": ["auth_jwt", "cdn_cloudfront"]}, "pipeline": {"client_ip": ["cloudfront"]},
            "layers": {"client_ip": {"cloudfront": settings}}}


async def test_viewer_address_through_the_real_server(tmp_path):
    async with running_stack(tmp_path, proxy=cloudfront(extra_trusted_ranges=["127.0.0.0/8"])) as stack:
        decisions = []
        stack.proxy.pipeline.observers.append(decisions.append)
        r = await stack.sign(valid_cv(), metadata=[("cloudfront-viewer-address", "2a01:4f8::7:46532")])
        assert r.code == grpc.StatusCode.OK, r.details
        assert decisions[-1].client == "2a01:4f8::7"
        before = await stack.signatures_made()
        r = await stack.sign(valid_cv(), metadata=[("cloudfront-viewer-address", "2a01:4f8::7")])  # no port
        assert r.code == grpc.StatusCode.INVALID_ARGUMENT
        assert await stack.signatures_made() == before


async def test_non_edge_refused(tmp_path):
    async with running_stack(tmp_path, proxy=cloudfront()) as stack:
        before = await stack.signatures_made()
        r = await stack.sign(valid_cv(), metadata=[("cloudfront-viewer-address", "81.2.69.7:1"),
                                                   ("x-forwarded-for", "81.2.69.7")])
        assert r.code == grpc.StatusCode.PERMISSION_DENIED
        assert await stack.signatures_made() == before
