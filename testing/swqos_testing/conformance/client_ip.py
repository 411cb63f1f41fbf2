"""Conformance suite for client-IP (CDN) resolvers.

Subclass :class:`ClientIpResolverConformance` in your plugin's tests (the class name must start
with ``Test`` for pytest to collect it) and fill in the few attributes and methods marked
*required*. Every inherited test carries a "Troubleshooting" note saying what a failure usually
means. The first-party ``cloudflare`` and ``cloudfront`` resolvers and the ``examples/cdn_fastly``
plugin run this same suite::

    from swqos_testing.conformance import ClientIpResolverConformance

    class TestMyCdnConformance(ClientIpResolverConformance):
        edge_peer_v4 = "ipv4:198.51.100.10:443"         # a peer inside the CDN's shipped ranges
        edge_peer_v6 = "ipv6:[2001:db8:cd::10]:443"
        cdn_client = "198.51.100.99"                    # a client address inside the CDN's ranges

        def make_resolver(self, *, require_cdn, refresh_url=None, ranges_file=None):
            ...  # build it exactly as the plugin's registered factory would
        def client_headers(self, client):
            return [("x-mycdn-client-ip", client)]
        def range_document(self, ipv4, ipv6, serial):
            ...  # bytes in the CDN's published format (for the refresh tests)

The resolver contract the suite checks (``swqos_core.layers.ClientIpResolver``):

- a header naming the client is read **only** when the TCP peer is a CDN edge;
- from a non-edge peer: ``require_cdn = true`` → Rejection PERMISSION_DENIED; otherwise the
  headers are ignored (``None``, or the peer's own address);
- from an edge: exactly one well-formed address, else a Rejection (INVALID_ARGUMENT for a
  malformed, missing or repeated header); an address inside the CDN's own ranges is refused;
- IPv6 clients and peers work; IPv4-mapped IPv6 is folded to IPv4;
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

#: Every well-known client-address header, each naming a forged client.
SPOOF_HEADERS: Callable[[str], Metadata] = lambda ip: [  # noqa: E731
    ("cf-connecting-ip", ip), ("cf-connecting-ipv6", "2001:db8:bad::1"), ("true-client-ip", ip),
    ("x-forwarded-for", f"{ip}, {ip}"), ("x-real-ip", ip), ("forwarded", f"for={ip}"),
    ("fastly-client-ip", ip), ("cloudfront-viewer-address", f"{ip}:443"),
]

MALFORMED_VALUES = [
    "", " ", "not-an-ip", "1.2.3.4, 5.6.7.8", "1.2.3.4,5.6.7.8", "1.2.3.256", "1.2.3", "1.2.3.4 x",
    " 1.2.3.4", "fe80::1%eth0", "2001:db8::1::2", "<html><body>", "1.2.3.4\x00", "\u0661.2.3.4",
    "9" * 300, "unknown", "::ffff:1.2.3.4.5", "[2001:db8::1]",
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
        self, *, require_cdn: bool, refresh_url: str | None = None, ranges_file: Path | None = None
    ) -> Any:
        """Build the resolver as its registered factory does (``require_cdn`` as given)."""
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
    outside_peer_v6: ClassVar[str] = "ipv6:[2001:db8:ffff::7]:50123"
    #: Set False if the resolver keeps no range list (then the refresh tests are skipped).
    supports_refresh: ClassVar[bool] = True
    #: True when the client header is a comma-separated list by design (X-Forwarded-For);
    #: the "a list is malformed" values are then skipped.
    list_header: ClassVar[bool] = False

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
        got = self.resolve(r, self.edge_peer_v4, self.client_headers("198.51.100.23"))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address("198.51.100.23")
        assert got.source != "peer", "source should name the CDN resolver, not 'peer'"
        assert got.peer == self.edge_peer_v4

    def test_ipv6_client_from_ipv6_edge(self) -> None:
        """IPv6 edges and IPv6 clients work, and distinct /64s stay distinct.

        Troubleshooting: ranges must include the IPv6 list; ``edge_peer_v6`` must be in it.
        Parsing with :func:`swqos_core.net.parse_peer` handles ``ipv6:[...]:port``.
        """
        r = self.make_resolver(require_cdn=True)
        got = self.resolve(r, self.edge_peer_v6, self.client_headers("2001:db8:1:2::abcd"))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address("2001:db8:1:2::abcd")
        other = self.resolve(r, self.edge_peer_v6, self.client_headers("2001:db8:1:3::abcd"))
        assert got.key != other.key

    def test_ipv4_mapped_client_is_folded(self) -> None:
        """A client written as ``::ffff:a.b.c.d`` is the IPv4 client a.b.c.d (shares its limits).

        Troubleshooting: parse with :func:`swqos_core.net.parse_ip`, which folds mapped
        addresses; comparing raw strings would give one client two rate-limit buckets.
        """
        r = self.make_resolver(require_cdn=True)
        got = self.resolve(r, self.edge_peer_v4, self.client_headers("::ffff:198.51.100.23"))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address("198.51.100.23")

    def test_ipv4_mapped_edge_peer_is_an_edge(self) -> None:
        """An edge seen on a dual-stack socket as ``ipv6:[::ffff:a.b.c.d]`` is still the edge.

        Troubleshooting: fold the peer before the range lookup (``RangeSet`` does).
        """
        r = self.make_resolver(require_cdn=True)
        peer = f"ipv6:[::ffff:{self.edge_v4_ip()}]:443"
        got = self.resolve(r, peer, self.client_headers("198.51.100.23"))
        assert isinstance(got, ClientAddress)
        assert got.ip == ipaddress.ip_address("198.51.100.23")

    @pytest.mark.parametrize("peer_attr", ["outside_peer", "outside_peer_v6"])
    def test_spoofed_headers_from_non_edge_are_ignored(self, peer_attr: str) -> None:
        """With ``require_cdn = false``, client headers from a non-edge peer are never believed.

        Troubleshooting: the resolver must check the TCP peer against the CDN ranges *before*
        reading any header, and return ``None`` (or the peer itself) when it is not an edge.
        Believing the header here lets anyone who reaches the origin directly pick their IP.
        """
        r = self.make_resolver(require_cdn=False)
        peer = getattr(self, peer_attr)
        got = self.resolve(r, peer, [*SPOOF_HEADERS("198.51.100.66"), *self.client_headers("198.51.100.66")])
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
        self.assert_refused(r, peer, self.client_headers("198.51.100.66"), (grpc.StatusCode.PERMISSION_DENIED,))
        self.assert_refused(r, peer, [], (grpc.StatusCode.PERMISSION_DENIED,))

    def test_non_ip_peer_refused_with_require_cdn(self) -> None:
        """A unix-socket (or otherwise non-IP) peer is no edge.

        Troubleshooting: ``parse_peer`` returns None for it; treat None as "not an edge".
        """
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, "unix:/run/swqos/proxy.sock", self.client_headers("198.51.100.66"),
                            (grpc.StatusCode.PERMISSION_DENIED,))

    def test_require_cdn_defaults_to_true(self) -> None:
        """Built from default settings, the resolver refuses non-edge peers.

        Troubleshooting: the settings field ``require_cdn`` must default to ``True``; a
        production config that forgets it must not silently accept direct connections.
        """
        r = self.default_resolver()
        self.assert_refused(r, self.outside_peer, self.client_headers("198.51.100.66"),
                            (grpc.StatusCode.PERMISSION_DENIED,))

    def test_missing_header_from_edge_refused(self) -> None:
        """An edge request that names no client is refused (it would otherwise be counted as
        the edge itself, lumping every client of that edge together).

        Troubleshooting: raise INVALID_ARGUMENT (or PERMISSION_DENIED) when the header is absent.
        """
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, self.edge_peer_v4, [],
                            (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED))

    @pytest.mark.parametrize("second", ["198.51.100.24", "198.51.100.23"])
    def test_repeated_header_refused(self, second: str) -> None:
        """Two header lines naming a client (different or equal) are refused: INVALID_ARGUMENT.

        Troubleshooting: read every value (``RequestHead.header_values``) and refuse more than
        one; taking the first or the last lets a client add its own line.
        """
        r = self.make_resolver(require_cdn=True)
        md = [*self.client_headers("198.51.100.23"), *self.client_headers(second)]
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

    @pytest.mark.parametrize("value", ["0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.1", "ff02::1"])  # noqa: S104
    def test_unroutable_client_refused(self, value: str) -> None:
        """Unspecified, loopback and multicast addresses are never a CDN's client.

        Troubleshooting: refuse ``ip.is_unspecified or ip.is_loopback or ip.is_multicast``.
        """
        r = self.make_resolver(require_cdn=True)
        self.assert_refused(r, self.edge_peer_v4, self.client_headers(value),
                            (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED))

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
        replacing one reference. Build on ``swqos_core.cdn.EdgeResolver`` to get this for free.
        """
        with self._served() as srv:
            r = self.make_resolver(require_cdn=True, refresh_url=srv.url)
            for what, body, status in self._bad_documents():
                srv.body, srv.status = body, status
                assert asyncio.run(r.refresh_now()) is False, f"a refresh returning {what} was accepted"
                got = self.resolve(r, self.edge_peer_v4, self.client_headers("198.51.100.23"))
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
        assert isinstance(self.resolve(r, self.edge_peer_v4, self.client_headers("198.51.100.23")), ClientAddress)

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
        got = self.resolve(r, "ipv4:45.0.0.9:443", self.client_headers("198.51.100.23"))
        assert isinstance(got, ClientAddress) and got.ip == ipaddress.ip_address("198.51.100.23")
        got6 = self.resolve(r, "ipv6:[2a0f:1234::9]:443", self.client_headers("198.51.100.23"))
        assert isinstance(got6, ClientAddress)
        self.assert_refused(r, self.edge_peer_v4, self.client_headers("198.51.100.23"),
                            (grpc.StatusCode.PERMISSION_DENIED,))
        assert ranges_file.exists() and b"45.0.0.0/24" in ranges_file.read_bytes()
        # a second resolver starting from that file trusts the new edge at once
        r2 = self.make_resolver(require_cdn=True, ranges_file=ranges_file)
        assert isinstance(self.resolve(r2, "ipv4:45.0.0.9:443", self.client_headers("198.51.100.23")), ClientAddress)
