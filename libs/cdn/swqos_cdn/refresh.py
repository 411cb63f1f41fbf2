"""Fetching a CDN's published ranges and replacing the snapshot, never with something worse."""

from __future__ import annotations

import datetime as dt
import ipaddress
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swqos_cdn.ranges import DEFAULT_STATE_DIR, ParsedRanges, RangeError, Snapshot, check_lists, check_successor
from swqos_core.fetch import FetchError, check_url, get_sync
from swqos_core.files import write_atomic
from swqos_core.net import parse_ip


@dataclass(frozen=True)
class CdnProvider:
    """One CDN, as the ``swqos cdn`` commands and :class:`EdgeResolver` see it."""

    name: str
    title: str
    #: Where the provider publishes its ranges.
    default_url: str
    #: Turns the published document into lists; raises RangeError (or any ValueError) if wrong.
    parse: Callable[[bytes], ParsedRanges]
    #: The snapshot shipped inside the plugin package.
    shipped: Callable[[], Snapshot]
    #: True when ``ParsedRanges.serial`` is a publication version that must never go back.
    serial_is_version: bool = False
    #: AWS-managed prefix lists for this CDN: ``((4, "com.amazonaws..."), (6, ...))``.
    aws_prefix_lists: tuple[tuple[int, str], ...] = ()
    #: Largest document accepted from ``default_url``.
    max_bytes: int = 1 << 20

    def default_ranges_file(self) -> Path:
        return DEFAULT_STATE_DIR / f"{self.name}.json"


def _is_loopback_host(host: str | None) -> bool:
    if host == "localhost":
        return True
    ip = parse_ip(host or "", fold=False)
    return ip is not None and ip.is_loopback


def fetch(url: str, *, timeout: float = 10.0, max_bytes: int = 1 << 20, ca_file: Path | None = None) -> bytes:
    """GET ``url`` with the kernel's bounded client (:func:`swqos_core.fetch.get_sync`): HTTPS with
    certificate and host-name checks (plain HTTP only to a loopback host, for tests), no redirects,
    no proxy from the environment, at most ``max_bytes`` on the wire, ``timeout`` seconds in all.
    Raises RangeError with a one-line reason."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
        raise RangeError(f"refusing plain-HTTP URL {url}: ranges must come over HTTPS")
    if parts.scheme not in ("http", "https"):
        raise RangeError(f"unsupported URL {url!r}: ranges come from an https:// URL")
    problem = check_url(url) if parts.scheme == "https" else None
    if problem is None and (parts.username or parts.password):
        problem = f"{url!r}: credentials in URLs are not allowed"
    if problem is not None:
        raise RangeError(problem)
    try:
        return get_sync(url, max_bytes=max_bytes, connect_timeout=min(5.0, timeout), total_timeout=timeout,
                        ca_bundle=ca_file)
    except FetchError as exc:
        raise RangeError(exc.message) from None


def snapshot_from_document(
    provider: CdnProvider, body: bytes, *, source: str, now: dt.datetime | None = None
) -> Snapshot:
    """Parse and validate a published document into a Snapshot (deduplicated, sorted)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        parsed = provider.parse(body)
    except RangeError as exc:
        raise RangeError(f"{provider.name}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise RangeError(f"{provider.name}: unexpected document from {source} ({type(exc).__name__})") from None
    check_lists(parsed.ipv4, parsed.ipv6, where=f"{provider.name} list from {source}")
    ipv4 = sorted(set(parsed.ipv4), key=lambda c: ipaddress.ip_network(c))
    ipv6 = sorted(set(parsed.ipv6), key=lambda c: ipaddress.ip_network(c))
    serial = parsed.serial if parsed.serial is not None else int(now.timestamp())
    return Snapshot(
        provider=provider.name, source=source, fetched_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        serial=serial, ipv4=tuple(ipv4), ipv6=tuple(ipv6), etag=parsed.etag,
    )


def same_ranges(a: Snapshot, b: Snapshot) -> bool:
    return (set(a.ipv4), set(a.ipv6)) == (set(b.ipv4), set(b.ipv6))


def refresh(
    provider: CdnProvider,
    *,
    url: str | None = None,
    previous: Snapshot | None,
    path: Path | None,
    timeout: float = 10.0,
    ca_file: Path | None = None,
    fetcher: Callable[..., bytes] = fetch,
) -> tuple[str, Snapshot]:
    """Fetch, validate, and (if ``path``) store atomically. Returns ``("updated"|"unchanged", snap)``.

    Raises RangeError and leaves ``path`` untouched when anything is wrong: network error, HTML,
    an empty or shrunken-to-nothing list, an invalid or over-broad CIDR, a lower version.
    """
    url = url or provider.default_url
    body = fetcher(url, timeout=timeout, max_bytes=provider.max_bytes, ca_file=ca_file)
    new = snapshot_from_document(provider, body, source=url)
    check_successor(new, previous, serial_is_version=provider.serial_is_version)
    if previous is not None and same_ranges(new, previous) and (
        (provider.serial_is_version and new.serial == previous.serial) or (new.etag and new.etag == previous.etag)
    ):
        return "unchanged", previous
    if path is not None:
        try:
            write_atomic(path, new.to_json(), mode=0o644)
        except OSError as exc:
            raise RangeError(f"cannot write {path}: {exc.strerror}") from None
    return "updated", new
