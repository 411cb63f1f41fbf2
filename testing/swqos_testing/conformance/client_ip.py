"""Conformance suite for client-IP (CDN) resolvers.

Subclass :class:`ClientIpResolverConformance` in your plugin's tests (the class name must start
with ``Test`` for pytest to collect it) and fill in the few attributes and methods marked
*required*. Every inherited test carries a "Troubleshooting" note saying what a failure usually
means. The first-party ``cloudflare`` and ``cloudfront`` resolvers and the ``examples/cdn_fastly``
plugin run this same suite::

    from swqos_testing.conformance import ClientIpResolverConformance

    class TestMyCdnConformance(ClientIpResolverConformance):
        edge_peer_v4 = "ipv4:45.60.0.10:443"         # a peer inside the CDN's shipped ranges
        edge_peer_v6 = "ipv6:[2a0f:cd::10]:443"
        cdn_client = "45.60.0.99"                    # a client address inside the CDN's ranges

        def make_resolver(self, *, require_cdn, refresh_url=None, ranges_file=None, allow_non_global=False):
            return build(MyCdnSettings(require_cdn=require_cdn, refresh_url=refresh_url,
                                       ranges_file=ranges_file, allow_non_global=allow_non_global))
        def client_headers(self, client):
            return [("x-mycdn-client-ip", client)]
        def range_document(self, ipv4, ipv6, serial):
            return json.dumps({"v4": ipv4, "v6": ipv6, "serial": serial}).encode()  # the CDN's format

The resolver contract the suite checks (``swqos_core.layers.ClientIpResolver``):

- a header naming the client is read **only** when the TCP peer is a CDN edge;
- from a non-edge peer: ``require_cdn = true`` → Rejection PERMISSION_DENIED; otherwise the
  headers are ignored (``None``, or the peer's own address);
- from an edge: exactly one well-formed address, else a Rejection (INVALID_ARGUMENT for a
  malformed, missing or repeated header); an address inside the CDN's own ranges is refused;
- IPv6 clients and peers work; IPv4-mapped, IPv4-compatible, 6to4 and NAT64 (64:ff9b::/96)
  client addresses are folded to their IPv4 address;
- a client address that is not globally routable (private, loopback, link-local, shared,
  documentation, benchmarking, reserved, unspecified, multicast, broadcast, and the IPv6 spellings
  of any of those) is refused with PERMISSION_DENIED, its label naming the kind
  (``<name>_client_broadcast``); with ``allow_non_global = true`` (staging) only unspecified,
  multicast and broadcast stay refused;
- a 6to4 or IPv4-compatible spelling of an edge address is no edge;
- never any exception other than :class:`~swqos_core.errors.Rejection`;
- ``require_cdn`` defaults to true;
- a range refresh that returns garbage, HTML, an empty list, ``0.0.0.0/0`` or a network error
  leaves the previous list in use (``async refresh_now() -> bool`` on the resolver).
"""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from swqos_core.errors import Rejection
from swqos_core.layers import ClientAddress, RequestHead

Metadata = list[tuple[str, str]]

#: Globally routable client addresses the suite names (documentation ranges would be refused).
CLIENT = "81.2.69.23"
CLIENT_V6 = "2a01:4f8:1:2::abcd"

#: Not globally routable client addresses and the kind each is refused as (the label's suffix).
NON_GLOBAL: list[tuple[str, str]] = [
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"), ("::1", "loopback"),
    ("169.254.1.1", "link_local"), ("fe80::1", "link_local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),  # noqa: S104
    ("0.1.2.3", "this_network"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("ff0e::1", "multicast"),
    ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"), ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"), ("3fff::1", "documentation"),
    ("100.64.0.1", "shared"), ("198.18.0.1", "benchmarking"),
    ("240.0.0.1", "reserved"), ("192.0.0.1", "reserved"), ("2001::1", "reserved"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"),
    # IPv6 spellings of a private IPv4 address are that address
    ("::ffff:10.0.0.1", "private"), ("::10.0.0.1", "private"), ("2002:a00:1::1", "private"),
    ("64:ff9b::10.0.0.1", "private"), ("2002:c000:201::", "documentation"),
]

#: IPv6 spellings of the IPv4 client CLIENT (mapped, compatible, 6to4, NAT64).
EMBEDDED: list[tuple[str, str]] = [
    ("mapped", f"::ffff:{CLIENT}"), ("compatible", f"::{CLIENT}"),
    ("6to4", "2002:5102:4517::1"), ("nat64", f"64:ff9b::{CLIENT}"),
]

#: Every well-known client-address header, each naming a forged client.
SPOOF_HEADERS: Callable[[str], Metadata] = lambda ip: [  # noqa: E731
    ("cf-connecting-ip", ip), ("cf-connecting-ipv6", "2a01:4f8:bad::1"), ("true-client-ip", ip),
    ("x-forwarded-for", f"{ip}, {ip}"), ("x-real-ip", ip), ("forwarded", f"for={ip}"),
    ("fastly-client-ip", ip), ("cloudfront-viewer-address", f"{ip}:443"),
]

MALFORMED_VALUES = [
    "", " ", "not-an-ip", "1.2.3.4, 5.6.7.8", "1.2.3.4,5.6.7.8", "1.2.3.256", "1.2.3", "1.2.3.4 x",
    " 1.2.3.4", "fe80::1%eth0", "2a01:4f8::1::2", "<html><body>", "1.2.3.4\x00", "\u0661.2.3.4",
    "9" * 300, "unknown", "::ffff:1.2.3.4.5", "[2a01:4f8::1]",
]


def head(peer: str, metadata: Metadata = (), auth_context: dict[str, list[bytes]] | None = None) -> RequestHead:
    return RequestHead(rpc="SignCertificateVerify", peer=peer, metadata=tuple(metadata),
                       auth_context=auth_context or {}, request_id="conformance")


class RangeDocumentServer:
    """A loopback HTTP server returning whatever ``body``/``status`` currently say."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ranges"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RangeDocumentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ClientIpResolverConformance:
    """Base class: subclass it as ``Test<YourCdn>Conformance``."""

    # --- required ------------------------------------------------------------------------
    #: gRPC peer strings of connections from the CDN's edge, inside the ranges the plugin ships.
    edge_peer_v4: ClassVar[str]
    edge_peer_v6: ClassVar[str]
    #: A client address inside the CDN's own ranges (the CDN talking to itself).
    cdn_client: ClassVar[str]

    def make_resolver(
        self, *, require_cdn: bool, refresh_url: str | None = None, ranges_file: Path | None = None,
        allow_non_global: bool = False,
    ) -> Any:
        """Build the resolver as its registered factory does (the settings as given)."""
        raise NotImplementedError

    def default_resolver(self) -> Any:
        """Build the resolver from the settings class's defaults (for the default-is-safe test)."""
        raise NotImplementedError

    def client_headers(self, client: str) -> Metadata:
        """The metadata the CDN's edge sends to name ``client``."""
        raise NotImplementedError

    def range_document(self, ipv4: list[str], ipv6: list[str], serial: int) -> bytes:
        """A document in the CDN's published format listing these ranges (refresh tests)."""
        raise NotImplementedError

    # --- optional ------------------------------------------------------------------------
    #: A peer that is certainly no edge of this CDN.
    outside_peer: ClassVar[str] = "ipv4:203.0.113.7:50123"
    outside_peer_v6: ClassVar[str] = "ipv6:[2a01:4f8:ffff::7]:50123"
    #: Set False if the resolver keeps no range list (then the refresh tests are skipped).
    supports_refresh: ClassVar[bool] = True
    #: True when the client header is a comma-separated list by design (X-Forwarded-For);
    #: the "a list is malformed" values are then skipped.
    list_header: ClassVar[bool] = False

    #: Non-global client values this CDN refuses by a rule of its own, checked in the plugin's
    #: tests (Cloudflare's Pseudo IPv4 addresses in 240.0.0.0/4); skipped in the kind-label tests.
    own_rule_for: ClassVar[frozenset[str]] = frozenset()

    def raw_header(self, value: str) -> Metadata:
        """The CDN's client header carrying ``value`` verbatim (malformed-value tests)."""
        return self.client_headers(value)

    # --- helpers -------------------------------------------------------------------------
    def resolve(self, resolver: Any, peer: str, metadata: Metadata = ()) -> Any:
        return asyncio.run(resolver.resolve(head(peer, metadata)))

    def assert_refused(self, resolver: Any, peer: str, metadata: Metadata,
                       codes: tuple[grpc.StatusCode, ...]) -> Rejection:
        try:
            result = self.resolve(resolver, peer, metadata)
        except Rejection as exc:
            assert exc.code in codes, f"refused with {exc.code.name}, expected one of {[c.name for c in codes]}"
            assert exc.reason, "a refusal must say why"
            return exc
        pytest.fail(f"expected a refusal ({[c.name for c in codes]}), got {result!r}")

    def edge_v4_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        from swqos_core.net import parse_peer
        ip = parse_peer(self.edge_peer_v4)
        assert ip is not None
        return ip

    # --- the suite -----------------------------------------------------------------------
    def test_client_header_from_edge_is_used(self) -> None:
        """An edge naming an IPv4 client gives that client, attributed to this resolver.

        Troubleshooting: ``edge_peer_v4`` must lie inside the ranges your package ships, and
        ``client_headers`` must produce exactly what your resolver reads. A ``None`` here means
        the resolver did not recognise the edge; a Rejection shows which check refused it.
        """
        r = self.make_resolver(require_cdn=True)
        got = self.resolve(r, self.edge_peer_v4, self.client_headers(CLIENT))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address(CLIENT)
        assert got.source != "peer", "source should name the CDN resolver, not 'peer'"
        assert got.peer == self.edge_peer_v4

    def test_ipv6_client_from_ipv6_edge(self) -> None:
        """IPv6 edges and IPv6 clients work, and distinct /64s stay distinct.

        Troubleshooting: ranges must include the IPv6 list; ``edge_peer_v6`` must be in it.
        Parsing with :func:`swqos_core.net.parse_peer` handles ``ipv6:[...]:port``.
        """
        r = self.make_resolver(require_cdn=True)
        got = self.resolve(r, self.edge_peer_v6, self.client_headers(CLIENT_V6))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address(CLIENT_V6)
        other = self.resolve(r, self.edge_peer_v6, self.client_headers("2a01:4f8:1:3::abcd"))
        assert got.key != other.key

    def test_ipv4_mapped_client_is_folded(self) -> None:
        """A client written as ``::ffff:a.b.c.d`` is the IPv4 client a.b.c.d (shares its limits).

        Troubleshooting: parse with :func:`swqos_core.net.parse_ip`, which folds mapped (and
        compatible, 6to4, NAT64) addresses; comparing raw strings would give one client two
        rate-limit buckets.
        """
        r = self.make_resolver(require_cdn=True)
        got = self.resolve(r, self.edge_peer_v4, self.client_headers(f"::ffff:{CLIENT}"))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address(CLIENT)

    def test_ipv4_mapped_edge_peer_is_an_edge(self) -> None:
        """An edge seen on a dual-stack socket as ``ipv6:[::ffff:a.b.c.d]`` is still the edge.

        Troubleshooting: fold the peer before the range lookup (``RangeSet`` does).
        """
        r = self.make_resolver(require_cdn=True)
        peer = f"ipv6:[::ffff:{self.edge_v4_ip()}]:443"
        got = self.resolve(r, peer, self.client_headers(CLIENT))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address(CLIENT)

    def test_percent_encoded_ipv6_edge_peer_is_an_edge(self) -> None:
        """grpcio writes IPv6 peers as ``ipv6:%5B2606:4700::1%5D:443``: still the edge.

        Troubleshooting: parse the peer with :func:`swqos_core.net.parse_peer` (it unquotes).
        """
        r = self.make_resolver(require_cdn=True)
        peer = self.edge_peer_v6.replace("[", "%5B").replace("]", "%5D")
        got = self.resolve(r, peer, self.client_headers(CLIENT))
        assert isinstance(got, ClientAddress) and got.ip == ipaddress.ip_address(CLIENT)

    @pytest.mark.parametrize("peer_attr", ["outside_peer", "outside_peer_v6"])
    def test_spoofed_headers_from_non_edge_are_ignored(self, peer_attr: str) -> None:
        """With ``require_cdn = false``, client headers from a non-edge peer are never believed.

        Troubleshooting: the resolver must check the TCP peer against the CDN ranges *before*
        reading any header, and return ``None`` (or the peer itself) when it is not an edge.
        Believing the header here lets anyone who reaches the origin directly pick their IP.
        """
        r = self.make_resolver(require_cdn=False)
        peer = getattr(self, peer_attr)
        got = self.resolve(r, peer, [*SPOOF_HEADERS("81.2.69.66"), *self.client_headers("81.2.69.66")])
        if got is not None:
            from swqos_core.net import parse_peer
            assert isinstance(got, ClientAddress)
            assert got.ip == parse_peer(peer), "a non-edge peer's headers must not name the client"

    @pytest.mark.parametrize("peer_attr", ["outside_peer", "outside_peer_v6"])
    def test_non_edge_refused_with_require_cdn(self, peer_attr: str) -> None:
        """With ``require_cdn = true``, a non-edge peer is refused with PERMISSION_DENIED,
        with or without forged headers.

        Troubleshooting: raise ``swqos_core.errors.permission_denied(...)`` before reading headers.
        """
        r = self.make_resolver(require_cdn=True)
        peer = getattr(self, peer_attr)
        self.assert_refused(r, peer, self.client_headers("81.2.69.66"), (grpc.StatusCode.PERMISSION_DENIED,))
        self.assert_refused(r, peer, [], (grpc.StatusCode.PERMISSION_DENIED,))

    def test_non_ip_peer_refused_with_require_cdn(self) -> None:
        """A unix-socket (or otherwise non-IP) peer is no edge.

        Troubleshooting: ``parse_peer`` returns None for it; treat None as "not an edge".
        """
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, "unix:/run/swqos/proxy.sock", self.client_headers("81.2.69.66"),
                            (grpc.StatusCode.PERMISSION_DENIED,))

    def test_require_cdn_defaults_to_true(self) -> None:
        """Built from default settings, the resolver refuses non-edge peers.

        Troubleshooting: the settings field ``require_cdn`` must default to ``True``; a
        production config that forgets it must not silently accept direct connections.
        """
        r = self.default_resolver()
        self.assert_refused(r, self.outside_peer, self.client_headers("81.2.69.66"),
                            (grpc.StatusCode.PERMISSION_DENIED,))

    def test_missing_header_from_edge_refused(self) -> None:
        """An edge request that names no client is refused (it would otherwise be counted as
        the edge itself, lumping every client of that edge together).

        Troubleshooting: raise INVALID_ARGUMENT (or PERMISSION_DENIED) when the header is absent.
        """
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, self.edge_peer_v4, [],
                            (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED))

    @pytest.mark.parametrize("second", ["81.2.69.24", "81.2.69.23"])
    def test_repeated_header_refused(self, second: str) -> None:
        """Two header lines naming a client (different or equal) are refused: INVALID_ARGUMENT.

        Troubleshooting: read every value (``RequestHead.header_values``) and refuse more than
        one; taking the first or the last lets a client add its own line.
        """
        r = self.make_resolver(require_cdn=True)
        md = [*self.client_headers(CLIENT), *self.client_headers(second)]
        self.assert_refused(r, self.edge_peer_v4, md, (grpc.StatusCode.INVALID_ARGUMENT,))

    @pytest.mark.parametrize("value", MALFORMED_VALUES)
    def test_malformed_header_refused(self, value: str) -> None:
        """Garbage, lists, ports where none belong, zone ids and overlong values are refused with
        INVALID_ARGUMENT, never guessed at and never an exception.

        Troubleshooting: parse with ``swqos_core.net.parse_ip`` (or ``EdgeResolver.parse_address``)
        and refuse on None; do not strip or split before deciding.
        """
        if self.list_header and "," in value:
            pytest.skip("comma-separated lists are this header's format")
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, self.edge_peer_v4, self.raw_header(value), (grpc.StatusCode.INVALID_ARGUMENT,))

    def test_client_inside_cdn_ranges_refused(self) -> None:
        """A client address inside the CDN's own ranges is refused (a Worker of another zone, a loop).

        Troubleshooting: check the parsed client against the same range set as the peer.
        """
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, self.edge_peer_v4, self.client_headers(self.cdn_client),
                            (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED))

    @pytest.mark.parametrize(("value", "kind"), NON_GLOBAL)
    def test_non_global_client_refused(self, value: str, kind: str) -> None:
        """A client address that is not globally routable is refused with PERMISSION_DENIED, and
        the refusal's label names what it is (``<resolver>_client_<kind>``).

        A CDN's client is on the internet: a private, loopback, documentation or broadcast address
        here is a broken edge or a forged header, and would pool every such caller in one bucket.
        IPv6 spellings of an IPv4 address (``::ffff:10.0.0.1``, ``::10.0.0.1``, ``2002:a00:1::``,
        ``64:ff9b::10.0.0.1``) are judged as that address.

        Troubleshooting: build on ``swqos_cdn.EdgeResolver`` (its ``resolve`` does this), or call
        ``swqos_cdn.non_global_kind(ip)`` on the address :func:`swqos_core.net.parse_ip` returned.
        """
        if value in self.own_rule_for:
            pytest.skip(f"{value} is refused by this CDN's own rule (own_rule_for)")
        r = self.make_resolver(require_cdn=True)
        exc = self.assert_refused(r, self.edge_peer_v4, self.client_headers(value), (grpc.StatusCode.PERMISSION_DENIED,))
        assert exc.label is not None and exc.label.endswith(f"_client_{kind}"), \
            f"{value} was refused with label {exc.label!r}, expected one ending in _client_{kind}"
        assert f"({kind})" in exc.reason, exc.reason

    def test_limited_broadcast_is_labelled_broadcast(self) -> None:
        """255.255.255.255 is refused as broadcast (Python files it under private and reserved).

        Troubleshooting: test for the limited broadcast address before the generic categories.
        """
        r = self.make_resolver(require_cdn=True)
        exc = self.assert_refused(r, self.edge_peer_v4, self.client_headers("255.255.255.255"),
                                  (grpc.StatusCode.PERMISSION_DENIED,))
        assert exc.label is not None and exc.label.endswith("_client_broadcast")
        assert "broadcast" in exc.reason

    @pytest.mark.parametrize(("how", "value"), EMBEDDED)
    def test_ipv6_spelling_of_an_ipv4_client_is_that_client(self, how: str, value: str) -> None:
        """IPv4-mapped, IPv4-compatible, 6to4 and NAT64 (64:ff9b::/96) spellings of an IPv4
        client are that IPv4 client: one rate-limit bucket, not a fresh IPv6 one per spelling.

        Troubleshooting: parse with :func:`swqos_core.net.parse_ip` (it folds all four).
        """
        r = self.make_resolver(require_cdn=True)
        got = self.resolve(r, self.edge_peer_v4, self.client_headers(value))
        assert isinstance(got, ClientAddress), f"{how} spelling {value} was not accepted: {got!r}"
        assert got.ip == ipaddress.ip_address(CLIENT)
        plain = self.resolve(r, self.edge_peer_v4, self.client_headers(CLIENT))
        assert got.key == plain.key

    @pytest.mark.parametrize(("value", "kind"), [(v, k) for v, k in NON_GLOBAL
                                                 if k not in ("unspecified", "this_network", "broadcast", "multicast")])
    def test_allow_non_global_admits_staging_clients(self, value: str, kind: str) -> None:
        """With ``allow_non_global = true`` (a staging setting) private, loopback, documentation...
        clients are accepted from an edge, as their folded address.

        Troubleshooting: ``make_resolver`` must pass ``allow_non_global`` to the settings.
        """
        if value in self.own_rule_for:
            pytest.skip(f"{value} is refused by this CDN's own rule (own_rule_for)")
        r = self.make_resolver(require_cdn=True, allow_non_global=True)
        got = self.resolve(r, self.edge_peer_v4, self.client_headers(value))
        assert isinstance(got, ClientAddress), f"{value} ({kind}) was not accepted with allow_non_global"

    @pytest.mark.parametrize("value", ["0.0.0.0", "::", "0.1.2.3", "255.255.255.255", "224.0.0.1", "ff02::1"])  # noqa: S104
    def test_never_a_client_even_in_staging(self, value: str) -> None:
        """Unspecified, "this network", broadcast and multicast addresses never name one client:
        refused with PERMISSION_DENIED whatever ``allow_non_global`` says.

        Troubleshooting: keep these out of what ``allow_non_global`` admits.
        """
        for allow in (False, True):
            r = self.make_resolver(require_cdn=True, allow_non_global=allow)
            self.assert_refused(r, self.edge_peer_v4, self.client_headers(value), (grpc.StatusCode.PERMISSION_DENIED,))

    def test_allow_non_global_defaults_to_false(self) -> None:
        """Built from default settings, the resolver refuses a private client address.

        Troubleshooting: the settings field ``allow_non_global`` must default to ``False``.
        """
        self.assert_refused(self.default_resolver(), self.edge_peer_v4, self.client_headers("10.0.0.1"),
                            (grpc.StatusCode.PERMISSION_DENIED,))

    @pytest.mark.parametrize("spelling", ["6to4", "compatible"])
    def test_6to4_or_compatible_spelling_of_an_edge_is_no_edge(self, spelling: str) -> None:
        """A peer ``2002:<edge>::`` or ``::<edge>`` is not the CDN: its return path runs through a
        6to4 relay (or nowhere), not through the edge. The mapped form (dual-stack socket) and
        NAT64 (a translator in front of the host) stay edges.

        Troubleshooting: use ``EdgeResolver.edge_peer`` to check the TCP peer.
        """
        edge = self.edge_v4_ip()
        packed = edge.packed
        written = (f"2002:{packed[0]:02x}{packed[1]:02x}:{packed[2]:02x}{packed[3]:02x}::1"
                   if spelling == "6to4" else f"::{edge}")
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, f"ipv6:[{written}]:443", self.client_headers(CLIENT), (grpc.StatusCode.PERMISSION_DENIED,))
        got = self.resolve(r, f"ipv6:[64:ff9b::{edge}]:443", self.client_headers(CLIENT))
        assert isinstance(got, ClientAddress) and got.ip == ipaddress.ip_address(CLIENT)

    def test_only_rejections_escape(self) -> None:
        """Random header values from an edge give a ClientAddress, None, or a Rejection: never
        another exception (which the pipeline would have to turn into a generic refusal).

        Troubleshooting: catch parsing errors (ValueError, UnicodeError) inside the resolver.
        """
        from hypothesis import given, settings
        from hypothesis import strategies as st

        r = self.make_resolver(require_cdn=True)

        @settings(max_examples=150, deadline=None)
        @given(st.text(max_size=80))
        def check(value: str) -> None:
            try:
                out = self.resolve(r, self.edge_peer_v4, self.raw_header(value))
            except Rejection:
                return
            assert out is None or isinstance(out, ClientAddress)

        check()

    # --- refresh -------------------------------------------------------------------------
    @contextmanager
    def _served(self) -> Iterator[RangeDocumentServer]:
        if not self.supports_refresh:
            pytest.skip("resolver keeps no range list (supports_refresh = False)")
        with RangeDocumentServer() as srv:
            yield srv

    def _bad_documents(self) -> list[tuple[str, bytes, int]]:
        edge = str(self.edge_v4_ip())
        return [
            ("empty lists", self.range_document([], [], 2_000_000_000), 200),
            ("an HTML page", b"<!doctype html><html><body>Bad gateway</body></html>", 200),
            ("an HTTP 503", self.range_document(["45.0.0.0/24"], [], 2_000_000_000), 503),
            ("the whole IPv4 internet", self.range_document(["0.0.0.0/0"], [], 2_000_000_000), 200),
            ("the whole IPv6 internet", self.range_document(["45.0.0.0/24"], ["::/0"], 2_000_000_000), 200),
            ("an invalid CIDR", self.range_document(["45.0.0.0/33", f"{edge}/32"], [], 2_000_000_000), 200),
            ("truncated JSON", self.range_document(["45.0.0.0/24"], [], 2_000_000_000)[:20], 200),
            ("nothing", b"", 200),
        ]

    def test_refresh_never_empties_the_list(self) -> None:
        """A refresh returning garbage, HTML, an error status, an empty list, ``/0`` or an
        invalid CIDR is refused (``refresh_now()`` returns False) and the edge stays trusted.

        Troubleshooting: validate the whole new list before swapping it in, and swap by
        replacing one reference. Build on ``swqos_cdn.EdgeResolver`` to get this for free.
        """
        with self._served() as srv:
            r = self.make_resolver(require_cdn=True, refresh_url=srv.url)
            for what, body, status in self._bad_documents():
                srv.body, srv.status = body, status
                assert asyncio.run(r.refresh_now()) is False, f"a refresh returning {what} was accepted"
                got = self.resolve(r, self.edge_peer_v4, self.client_headers(CLIENT))
                assert isinstance(got, ClientAddress), f"after a refresh returning {what} the edge is no longer trusted"

    def test_refresh_network_error_keeps_the_list(self) -> None:
        """An unreachable refresh URL keeps the list.

        Troubleshooting: catch network errors in the refresh; log them, never raise into serving.
        """
        if not self.supports_refresh:
            pytest.skip("resolver keeps no range list (supports_refresh = False)")
        with RangeDocumentServer() as srv:
            url = srv.url
        r = self.make_resolver(require_cdn=True, refresh_url=url)  # server is closed now
        assert asyncio.run(r.refresh_now()) is False
        assert isinstance(self.resolve(r, self.edge_peer_v4, self.client_headers(CLIENT)), ClientAddress)

    def test_refresh_applies_a_valid_list(self, tmp_path: Path) -> None:
        """A valid new list replaces the old one: new edges trusted, dropped edges not, and the
        ranges file (when configured) holds the new list.

        Troubleshooting: ``range_document`` must produce the CDN's real published format; the
        resolver must swap its range set after validation.
        """
        ranges_file = tmp_path / "ranges.json"
        with self._served() as srv:
            r = self.make_resolver(require_cdn=True, refresh_url=srv.url, ranges_file=ranges_file)
            srv.body = self.range_document(["45.0.0.0/24"], ["2a0f:1234::/32"], 2_000_000_000)
            assert asyncio.run(r.refresh_now()) is True
        got = self.resolve(r, "ipv4:45.0.0.9:443", self.client_headers(CLIENT))
        assert isinstance(got, ClientAddress) and got.ip == ipaddress.ip_address(CLIENT)
        got6 = self.resolve(r, "ipv6:[2a0f:1234::9]:443", self.client_headers(CLIENT))
        assert isinstance(got6, ClientAddress)
        self.assert_refused(r, self.edge_peer_v4, self.client_headers(CLIENT),
                            (grpc.StatusCode.PERMISSION_DENIED,))
        assert ranges_file.exists() and b"45.0.0.0/24" in ranges_file.read_bytes()
        # a second resolver starting from that file trusts the new edge at once
        r2 = self.make_resolver(require_cdn=True, ranges_file=ranges_file)
        assert isinstance(self.resolve(r2, "ipv4:45.0.0.9:443", self.client_headers(CLIENT)), ClientAddress)
