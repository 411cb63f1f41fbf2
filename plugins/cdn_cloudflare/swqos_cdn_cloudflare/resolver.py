"""The ``cloudflare`` client-IP resolver: CF-Connecting-IP (or CF-Connecting-IPv6), edge-gated."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from swqos_cdn import EdgeResolver, EdgeSettings
from swqos_cdn_cloudflare.ranges import PROVIDER
from swqos_core.errors import ConfigError, invalid_argument, permission_denied
from swqos_core.layers import BuildContext, RequestHead
from swqos_core.net import IPAddress, fold_mapped

#: Cloudflare's "Pseudo IPv4" puts a Class E address (240.0.0.0/4) in CF-Connecting-IP.
PSEUDO_IPV4 = IPv4Network("240.0.0.0/4")
LIMITED_BROADCAST = IPv4Address("255.255.255.255")


@dataclass
class CloudflareSettings(EdgeSettings):
    """``[layers.client_ip.cloudflare]`` (plus the common keys of EdgeSettings)."""

    #: Pseudo IPv4 = "Overwrite Headers": the real IPv6 client is in CF-Connecting-IPv6.
    pseudo_ipv4_overwrite: bool = False
    #: Refuse a connection without a verified TLS client certificate (Authenticated Origin Pulls).
    require_origin_pull_cert: bool = False
    #: PEM CA the origin-pull certificate must be issued by (your zone's own CA, or Cloudflare's
    #: global one). Checked in addition to the TLS layer's own verification ([proxy] client_ca).
    origin_pull_ca: Path | None = None


class CloudflareResolver(EdgeResolver):
    def __init__(self, settings: CloudflareSettings, ctx: BuildContext) -> None:
        super().__init__(settings, PROVIDER, name=ctx.name, logger=ctx.logger)
        self.cf = settings
        self._aop_issuers: list[x509.Certificate] = []
        if settings.origin_pull_ca is not None:
            try:
                self._aop_issuers = x509.load_pem_x509_certificates(settings.origin_pull_ca.read_bytes())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"origin_pull_ca {settings.origin_pull_ca}: cannot load: {exc}") from None
            if not settings.require_origin_pull_cert:
                raise ConfigError("origin_pull_ca is set but require_origin_pull_cert is false")

    def check_connection(self, head: RequestHead) -> None:
        if not self.cf.require_origin_pull_cert:
            return
        refuse = permission_denied("Cloudflare origin-pull client certificate required",
                                   label=f"{self.name}_no_origin_pull_cert")
        ctx = head.auth_context
        if b"ssl" not in list(ctx.get("transport_security_type", ())):
            raise refuse
        pems = list(ctx.get("x509_pem_cert", ()))
        if len(pems) != 1:  # grpc puts the peer's verified leaf here, and only when one was presented
            raise refuse
        if self._aop_issuers:
            try:
                cert = x509.load_pem_x509_certificate(bytes(pems[0]))
            except ValueError:
                raise refuse from None
            if not any(_issued_by(cert, ca) for ca in self._aop_issuers):
                raise refuse

    def client_ip(self, head: RequestHead) -> IPAddress:
        if self.cf.pseudo_ipv4_overwrite:
            v6 = self.single_header(head, "cf-connecting-ipv6")
            if v6 is not None:
                ip = self.parse_address(v6, "cf-connecting-ipv6", fold=False)
                if ip.version != 6:
                    raise invalid_argument("cf-connecting-ipv6 is not an IPv6 address", label=f"{self.name}_bad_header")
                # Pseudo IPv4 also rewrites CF-Connecting-IP; it must still be a single value.
                self.require_header(head, "cf-connecting-ip")
                return fold_mapped(ip)  # a 6to4 or NAT64 client is its IPv4 address, like everywhere
        ip = self.parse_address(self.require_header(head, "cf-connecting-ip"), "cf-connecting-ip")
        if ip in PSEUDO_IPV4 and ip != LIMITED_BROADCAST:  # broadcast is refused as broadcast, never a pseudo address
            # A Class E pseudo address stands for an IPv6 client we were not told about.
            raise invalid_argument(
                "cf-connecting-ip holds a Pseudo IPv4 address; set pseudo_ipv4_overwrite = true "
                "so CF-Connecting-IPv6 is used", label=f"{self.name}_pseudo_ipv4")
        return ip


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def build(settings: CloudflareSettings, ctx: BuildContext) -> CloudflareResolver:
    return CloudflareResolver(settings, ctx)
