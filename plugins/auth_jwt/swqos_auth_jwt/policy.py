"""Runtime policy of the JWT authenticator: revocation lists and per-trader IP allowlists.

Each has two sources: a watched JSON file (the operator's or the marketplace's copy) and changes
made through the admin API, kept as policy records in the state store (:class:`StoredPolicy`:
they survive restarts and reach every replica). An entry in the file can only be lifted by
editing the file; the admin API adds and removes its own entries on top.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from swqos_core.net import IPAddress, fold_mapped
from swqos_core.store import PolicyRecord, StateStore

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ID_LEN = 256


def _str_list(doc: dict[str, Any], key: str) -> frozenset[str]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_LEN for i in items):
        raise ValueError(f"{key!r} must be a list of non-empty strings")
    return frozenset(items)


@dataclass(frozen=True)
class RevocationFile:
    """``{"sub": [...], "jti": [...], "kid": [...]}``; every key optional, nothing else allowed."""

    sub: frozenset[str] = frozenset()
    jti: frozenset[str] = frozenset()
    kid: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> RevocationFile:
        unknown = set(doc) - {"sub", "jti", "kid"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} (allowed: sub, jti, kid)")
        return cls(_str_list(doc, "sub"), _str_list(doc, "jti"), _str_list(doc, "kid"))


@dataclass
class Revocations:
    file: RevocationFile = field(default_factory=RevocationFile)
    sub: set[str] = field(default_factory=set)
    jti: set[str] = field(default_factory=set)
    kid: set[str] = field(default_factory=set)

    def subject_revoked(self, sub: str) -> bool:
        return sub in self.sub or sub in self.file.sub

    def token_revoked(self, jti: str) -> bool:
        return jti in self.jti or jti in self.file.jti

    def key_revoked(self, kid: str) -> bool:
        return kid in self.kid or kid in self.file.kid

    def snapshot(self) -> dict[str, list[str]]:
        return {
            "sub": sorted(self.sub | self.file.sub),
            "jti": sorted(self.jti | self.file.jti),
            "kid": sorted(self.kid | self.file.kid),
        }


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDRs strictly (host bits must be zero: ``10.0.0.1/24`` is a typo, not a network)."""
    if isinstance(cidrs, str):
        raise ValueError("expected a list of CIDRs, not one string")
    nets = []
    for c in cidrs:
        if not isinstance(c, str) or len(c) > 64:
            raise ValueError(f"not a CIDR: {c!r}")
        net = ipaddress.ip_network(c.strip(), strict=True)
        mapped = isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None
        if mapped and net.prefixlen >= 96:
            # ::ffff:a.b.c.d/n means the IPv4 network; addresses are folded the same way
            net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
        nets.append(net)
    return tuple(nets)


def parse_allowlist_file(doc: dict[str, Any]) -> dict[str, tuple[Network, ...]]:
    """``{"<sub>": ["203.0.113.0/24", "2001:db8::/48"], ...}``."""
    out = {}
    for sub, cidrs in doc.items():
        if not sub or len(sub) > MAX_ID_LEN or not isinstance(cidrs, list):
            raise ValueError(f"allowlist entry {sub[:64]!r} must map a subject to a list of CIDRs")
        out[sub] = parse_networks(cidrs)
    return out


@dataclass
class Allowlist:
    #: When True, a subject without any list is refused; when False it may connect from anywhere.
    required: bool = False
    file: dict[str, tuple[Network, ...]] = field(default_factory=dict)
    #: Admin API overrides: they replace the file's list for that subject.
    runtime: dict[str, tuple[Network, ...]] = field(default_factory=dict)

    def networks(self, sub: str) -> tuple[Network, ...] | None:
        nets = self.runtime.get(sub)
        return nets if nets is not None else self.file.get(sub)

    def allows(self, sub: str, ip: IPAddress | None) -> bool:
        nets = self.networks(sub)
        if nets is None:
            return not self.required
        if ip is None:
            return False
        ip = fold_mapped(ip)
        return any(ip.version == n.version and ip in n for n in nets)

    def snapshot(self) -> dict[str, list[str]]:
        subs = set(self.file) | set(self.runtime)
        return {s: [str(n) for n in (self.networks(s) or ())] for s in sorted(subs)}


# --- admin changes as policy records in the state store ------------------------------------------

#: Policy-record namespaces (``swqos state show`` lists them).
REVOKED_NAMESPACE = "auth_jwt.revoked"
ALLOWLIST_NAMESPACE = "auth_jwt.allowlist"
_KINDS = ("sub", "jti", "kid")


class StoredPolicy:
    """The admin API's revocations and allowlists, kept as policy records in the state store.

    A change is written to the store first (durably, with who made it and when) and applied here
    when the store delivers it: at once on this replica, within one sync interval on the others,
    and at every start, so a revoked trader stays revoked across a restart or a crash. A change
    the store cannot take is refused (StoreUnavailable), never applied to this replica alone.
    """

    def __init__(self, revocations: Revocations, allowlist: Allowlist, store: StateStore,
                 on_revoked: Callable[[str, str], None] = lambda kind, ident: None) -> None:
        self.revocations = revocations
        self.allowlist = allowlist
        self.store = store
        self.on_revoked = on_revoked
        self._sets = {"sub": revocations.sub, "jti": revocations.jti, "kid": revocations.kid}
        store.subscribe(REVOKED_NAMESPACE, self._apply_revocation)
        store.subscribe(ALLOWLIST_NAMESPACE, self._apply_allowlist)

    @staticmethod
    def _check(kind: str, ident: str) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}")
        if not isinstance(ident, str) or not 0 < len(ident) <= MAX_ID_LEN or not ident.isprintable():
            raise ValueError(f"{kind} must be a printable string of 1 to {MAX_ID_LEN} characters")

    async def revoke(self, kind: str, ident: str, actor: str) -> None:
        self._check(kind, ident)
        await self.store.put_policy(REVOKED_NAMESPACE, f"{kind}:{ident}", True, actor)

    async def restore(self, kind: str, ident: str, actor: str) -> bool:
        """Lift an admin revocation; False when the revocation file still revokes it."""
        self._check(kind, ident)
        await self.store.put_policy(REVOKED_NAMESPACE, f"{kind}:{ident}", None, actor)
        return ident not in getattr(self.revocations.file, kind)

    async def set_allowlist(self, sub: str, cidrs: Iterable[str] | None, actor: str) -> None:
        """``None`` drops the admin override; a malformed CIDR raises ValueError, nothing written."""
        self._check("sub", sub)
        value = None if cidrs is None else [str(n) for n in parse_networks(list(cidrs))]
        await self.store.put_policy(ALLOWLIST_NAMESPACE, sub, value, actor)

    def _apply_revocation(self, rec: PolicyRecord) -> None:
        kind, _, ident = rec.key.partition(":")
        target = self._sets.get(kind)
        if target is None or not ident:
            raise ValueError(f"unknown revocation record key {rec.key[:80]!r}")
        if rec.value is None:
            target.discard(ident)
        else:
            target.add(ident)
            self.on_revoked(kind, ident)

    def _apply_allowlist(self, rec: PolicyRecord) -> None:
        if rec.value is None:
            self.allowlist.runtime.pop(rec.key, None)
        else:
            self.allowlist.runtime[rec.key] = parse_networks(list(rec.value))
