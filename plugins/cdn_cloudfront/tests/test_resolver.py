"""CloudFront-specific header handling beyond the conformance suite."""

import asyncio
import ipaddress
import logging
from pathlib import Path

import grpc
import pytest

from swqos_cdn_cloudfront.resolver import CloudFrontResolver, CloudFrontSettings
from swqos_core.errors import Rejection
from swqos_core.layers import BuildContext
from swqos_testing.conformance.client_ip import head

EDGE = "ipv4:130.176.1.10:443"


def build(**kw):
    ctx = BuildContext(name="cloudfront", kind="client_ip", process="proxy", config_dir=Path("."),
                       logger=logging.getLogger("test.cloudfront"))
    return CloudFrontResolver(CloudFrontSettings(**kw), ctx)


def resolve(r, md, peer=EDGE):
    return asyncio.run(r.resolve(head(peer, md)))


@pytest.mark.parametrize(("value", "ip"), [
    ("81.2.69.10:46532", "81.2.69.10"),
    ("2a01:4f8::1:46532", "2a01:4f8::1"),          # unbracketed: split at the last colon
    ("2a01:4f8:1:2:3:4:5:6:443", "2a01:4f8:1:2:3:4:5:6"),
    ("[2a01:4f8::1]:46532", "2a01:4f8::1"),
    ("[::ffff:81.2.69.10]:1", "81.2.69.10"),
    ("81.2.69.10:0", "81.2.69.10"),
])
def test_viewer_address_forms(value, ip):
    assert resolve(build(), [("cloudfront-viewer-address", value)]).ip == ipaddress.ip_address(ip)


@pytest.mark.parametrize("value", [
    "81.2.69.10", "81.2.69.10:", "81.2.69.10:65536", "81.2.69.10:-1", "81.2.69.10:4a",
    "[2a01:4f8::1]", "[2a01:4f8::1]46532", "2a01:4f8::1", "[81.2.69.10:443", ":443", "81.2.69.10:443:1",
    "81.2.69.10:٤٤٣",
])
def test_viewer_address_malformed(value):
    with pytest.raises(Rejection) as exc:
        resolve(build(), [("cloudfront-viewer-address", value)])
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_viewer_address_mode_ignores_xff():
    with pytest.raises(Rejection):
        resolve(build(), [("x-forwarded-for", "81.2.69.10")])


def test_xff_takes_the_rightmost_entry_not_the_viewers_claim():
    r = build(client_header="x-forwarded-for")
    got = resolve(r, [("x-forwarded-for", "1.1.1.1, 8.8.8.8, 81.2.69.10")])
    assert got.ip == ipaddress.ip_address("81.2.69.10")


def test_xff_skips_trusted_hops():
    # A load balancer between CloudFront and the proxy appends CloudFront's address.
    r = build(client_header="x-forwarded-for", extra_trusted_ranges=["10.0.0.0/8"])
    got = resolve(r, [("x-forwarded-for", "1.1.1.1, 81.2.69.10, 130.176.1.99")], peer="ipv4:10.1.2.3:443")
    assert got.ip == ipaddress.ip_address("81.2.69.10")


@pytest.mark.parametrize("value", ["81.2.69.10, garbage", "81.2.69.10, ", "81.2.69.10,,130.176.1.1",
                                   "1.2.3.4, 81.2.69.10:443"])
def test_xff_bad_entry_in_the_part_we_read_is_refused(value):
    r = build(client_header="x-forwarded-for")
    with pytest.raises(Rejection) as exc:
        resolve(r, [("x-forwarded-for", value)])
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_xff_viewer_garbage_left_of_the_client_is_never_read():
    # The left part is whatever the viewer sent; it neither names the client nor refuses it.
    r = build(client_header="x-forwarded-for")
    got = resolve(r, [("x-forwarded-for", "<script>, ,127.0.0.1, 81.2.69.10")])
    assert got.ip == ipaddress.ip_address("81.2.69.10")


def test_xff_only_cdn_addresses_refused():
    r = build(client_header="x-forwarded-for")
    with pytest.raises(Rejection) as exc:
        resolve(r, [("x-forwarded-for", "130.176.1.1, 15.158.0.1")])
    assert exc.value.code == grpc.StatusCode.PERMISSION_DENIED
